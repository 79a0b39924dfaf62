//! `utm_*` parameters of a short URL's query string.

use kurz_schemas::Utm;

const MAX_LEN: usize = 128;

pub fn parse(query: &str) -> Utm {
    let mut u = Utm::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "utm_source" => &mut u.source,
            "utm_medium" => &mut u.medium,
            "utm_campaign" => &mut u.campaign,
            "utm_term" => &mut u.term,
            "utm_content" => &mut u.content,
            _ => continue,
        };
        let v = v.trim();
        if slot.is_none() && !v.is_empty() {
            *slot = Some(v.chars().take(MAX_LEN).collect());
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn takes_the_first_non_empty_value_of_each_and_ignores_the_rest() {
        let u = parse("utm_source=a%20b&utm_source=second&utm_medium=&utm_campaign=spring+sale&utm_term=x&utm_content=y&other=1");
        assert_eq!(u.source.as_deref(), Some("a b"));
        assert_eq!(u.medium, None);
        assert_eq!(u.campaign.as_deref(), Some("spring sale"));
        assert_eq!((u.term.as_deref(), u.content.as_deref()), (Some("x"), Some("y")));
        assert!(parse("").is_empty() && parse("a=1&b").is_empty());
        assert_eq!(parse(&format!("utm_source={}", "z".repeat(500))).source.unwrap().len(), 128);
    }
}
