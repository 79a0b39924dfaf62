//! From what a redirect kept ([`RawClick`]) to the click event: no I/O, off the
//! request path (the flusher runs it).

use super::{agent::Classifier, geo::Geo, utm, visitor::VisitorHasher, CaptureSettings, RawClick, Visited};
use kurz_schemas::{Click, ClickRecord, Orphan};

pub struct Enricher {
    agents: Classifier,
    visitors: VisitorHasher,
    geo: Option<Geo>,
}

impl Enricher {
    pub fn new(settings: &CaptureSettings) -> Result<Enricher, crate::Error> {
        let geo = settings.geoip_db.as_deref().map(Geo::open).transpose()?;
        Ok(Enricher { agents: Classifier::new(), visitors: VisitorHasher::new(&settings.secret), geo })
    }

    /// The record of a visit: a link's click, or an orphan visit with the same visitor
    /// fields (no UTM parameters: those describe a link's campaign).
    pub fn record(&self, raw: RawClick) -> ClickRecord {
        let v = self.visitor(&raw);
        match raw.visited {
            Visited::Link(link) => ClickRecord::Link(Click {
                link_id: link.id,
                code: link.short_code.clone(),
                owner_id: link.user_id,
                at: raw.at,
                referrer_host: v.referrer_host,
                user_agent: None,
                agent: v.agent,
                bot: v.bot,
                head: raw.head,
                utm: raw.query.as_deref().map(utm::parse).unwrap_or_default(),
                visitor: v.visitor,
                country: v.country,
            }),
            Visited::Orphan { kind, code, link_id } => ClickRecord::Orphan(Orphan {
                orphan: kind,
                at: raw.at,
                code: code.map(String::from),
                link_id,
                referrer_host: v.referrer_host,
                agent: v.agent,
                bot: v.bot,
                head: raw.head,
                visitor: v.visitor,
                country: v.country,
            }),
        }
    }

    /// What a visit says of its visitor, the same for a click and an orphan visit.
    fn visitor(&self, raw: &RawClick) -> VisitorFields {
        let (agent, bot) = match raw.user_agent.as_deref() {
            Some(ua) => {
                let (a, bot) = self.agents.classify(ua);
                (Some(a), bot)
            }
            // No User-Agent at all: unknown, counted (the contract counts every redirect
            // that is not a known bot).
            None => (None, false),
        };
        VisitorFields {
            referrer_host: raw.referer.as_deref().and_then(referrer_host),
            agent,
            bot,
            visitor: raw.addr.map(|ip| self.visitors.visitor(raw.at, ip, raw.user_agent.as_deref().unwrap_or(""))),
            country: raw.country.as_deref().and_then(country_code).or_else(|| raw.addr.and_then(|ip| self.geo.as_ref()?.country(ip))),
        }
    }
}

/// The visitor fields of a click and of an orphan visit.
struct VisitorFields {
    referrer_host: Option<String>,
    agent: Option<kurz_schemas::Agent>,
    bot: bool,
    visitor: Option<String>,
    country: Option<String>,
}

/// The host of a `Referer` value, lowercased; never the path or query.
pub fn referrer_host(referer: &str) -> Option<String> {
    url::Url::parse(referer).ok()?.host_str().map(|h| h.to_ascii_lowercase())
}

/// A two-letter country code from a trusted header (`XX` and `T1`, which CDNs use for
/// unknown and Tor, are no country).
pub fn country_code(v: &str) -> Option<String> {
    let v = v.trim();
    let ok = v.len() == 2 && v.bytes().all(|b| b.is_ascii_alphabetic());
    let code = v.to_ascii_uppercase();
    (ok && code != "XX").then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kurz_schemas::{Device, Ts};

    fn click(e: &Enricher, raw: RawClick) -> Click {
        match e.record(raw) {
            ClickRecord::Link(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn raw() -> RawClick {
        RawClick {
            visited: Visited::Link(crate::capture::test_link(7, "abc")),
            at: Ts(1_800_000_000_000),
            head: false,
            referer: Some("https://News.Example.com/path?q=secret".into()),
            user_agent: Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36".into(),
            ),
            addr: Some("203.0.113.9".parse().unwrap()),
            query: Some("utm_source=news&utm_medium=email&x=1".into()),
            country: Some("de".into()),
        }
    }

    #[test]
    fn a_browser_click_is_classified_hashed_and_counted() {
        let e = Enricher::new(&CaptureSettings { secret: b"k".to_vec(), ..CaptureSettings::default() }).unwrap();
        let c = click(&e, raw());
        assert_eq!(c.referrer_host.as_deref(), Some("news.example.com"), "host only, lowercased");
        let a = c.agent.clone().unwrap();
        assert_eq!((a.browser.as_str(), a.os.as_str(), a.device), ("Chrome", "Windows", Device::Desktop));
        assert!(!c.bot && !c.head && c.counted());
        assert_eq!((c.utm.source.as_deref(), c.utm.medium.as_deref(), c.utm.campaign.as_deref()), (Some("news"), Some("email"), None));
        assert_eq!(c.country.as_deref(), Some("DE"));
        let v = c.visitor.clone().unwrap();
        assert_eq!(v.len(), 32);
        assert!(!c.encode().windows(11).any(|w| w == b"203.0.113.9"), "the address never reaches the event");
        assert_eq!(c.user_agent, None, "v2 events carry the class, not the raw header");
    }

    #[test]
    fn bots_and_head_requests_are_flagged_not_counted() {
        let e = Enricher::new(&CaptureSettings::default()).unwrap();
        let bot = click(&e, RawClick { user_agent: Some("Googlebot/2.1 (+http://www.google.com/bot.html)".into()), ..raw() });
        assert!(bot.bot && !bot.counted());
        assert_eq!(bot.agent.unwrap().device, Device::Bot);
        let curl = click(&e, RawClick { user_agent: Some("curl/8.5.0".into()), ..raw() });
        assert!(curl.bot, "command-line tools are not visitors");
        let none = click(&e, RawClick { user_agent: None, ..raw() });
        assert!(!none.bot && none.agent.is_none() && none.counted(), "no header is unknown, not a bot");
        let head = click(&e, RawClick { head: true, ..raw() });
        assert!(head.head && !head.bot && !head.counted());
    }

    #[test]
    fn an_orphan_keeps_the_visitor_fields_and_nothing_of_a_link() {
        let e = Enricher::new(&CaptureSettings { secret: b"k".to_vec(), ..CaptureSettings::default() }).unwrap();
        let visited = Visited::Orphan { kind: kurz_schemas::OrphanKind::NotFound, code: Some("nope1".into()), link_id: None };
        let ClickRecord::Orphan(o) = e.record(RawClick { visited, ..raw() }) else { panic!("an orphan") };
        assert_eq!((o.code.as_deref(), o.link_id, o.at), (Some("nope1"), None, raw().at));
        assert_eq!((o.referrer_host.as_deref(), o.country.as_deref()), (Some("news.example.com"), Some("DE")));
        assert_eq!(o.visitor, click(&e, raw()).visitor, "the same visitor hash as a click of theirs");
        assert!(!String::from_utf8(o.encode()).unwrap().contains("utm"), "no campaign fields");
        assert!(matches!(e.record(raw()), ClickRecord::Link(c) if c.code == "abc"));
    }

    #[test]
    fn countries_come_from_the_trusted_header_only_when_valid() {
        assert_eq!(country_code(" us "), Some("US".into()));
        assert_eq!(country_code("XX"), None);
        assert_eq!(country_code("USA"), None);
        assert_eq!(country_code("1A"), None);
    }
}
