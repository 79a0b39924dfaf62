//! The vault port's promises, for every backend.

use crate::vault::{DataKey, KeyState, Vault};
use crate::StorageError;
use std::sync::Arc;

fn subject(n: u32) -> String {
    format!("7f3c1d2e-0000-4000-8000-{n:012}")
}

pub async fn run(v: Arc<dyn Vault>) {
    v.ping().await.unwrap();
    // Unknown, then live with exactly the key stored.
    let (a, b) = (subject(1), subject(2));
    assert_eq!(v.get(&a).await.unwrap(), KeyState::Unknown);
    let ka = DataKey::random();
    let kb = DataKey::random();
    assert_ne!(ka, kb, "keys are random");
    v.create(&a, &ka).await.unwrap();
    v.create(&b, &kb).await.unwrap();
    assert_eq!(v.get(&a).await.unwrap(), KeyState::Live(ka.clone()));
    assert_eq!(v.get(&b).await.unwrap(), KeyState::Live(kb.clone()));

    // A key is never replaced.
    let again = v.create(&a, &DataKey::random()).await;
    assert!(matches!(again, Err(StorageError::Conflict(_))), "{again:?}");
    assert_eq!(v.get(&a).await.unwrap(), KeyState::Live(ka.clone()));

    // Erasure destroys one subject's key only, keeps when it happened, and is final.
    v.erase(&a, 1_700_000_000_123).await.unwrap();
    assert_eq!(v.get(&a).await.unwrap(), KeyState::Erased { at: 1_700_000_000_123 });
    assert_eq!(v.get(&b).await.unwrap(), KeyState::Live(kb.clone()));
    v.erase(&a, 1_800_000_000_000).await.unwrap();
    assert_eq!(v.get(&a).await.unwrap(), KeyState::Erased { at: 1_700_000_000_123 }, "a second erase changes nothing");
    assert!(matches!(v.create(&a, &ka).await, Err(StorageError::Conflict(_))), "an erased subject never comes back");
    v.erase(&subject(3), 5).await.unwrap();
    assert_eq!(v.get(&subject(3)).await.unwrap(), KeyState::Unknown, "erasing the unknown is a no-op");

    // Subjects are checked before any backend sees them.
    for bad in ["", "a b", "x/../y", &"s".repeat(65), "quote'd"] {
        assert!(v.get(bad).await.is_err(), "{bad:?}");
        assert!(v.create(bad, &DataKey::random()).await.is_err(), "{bad:?}");
    }
    // Many at once (a bulk import's users): every one stored with its own key; a
    // batch naming a taken subject is refused.
    let many: Vec<(String, DataKey)> = (10..310).map(|n| (subject(n), DataKey::random())).collect();
    v.create_many(&many).await.unwrap();
    for (s, k) in many.iter().step_by(37) {
        assert_eq!(v.get(s).await.unwrap(), KeyState::Live(k.clone()), "{s}");
    }
    let clash = vec![(subject(400), DataKey::random()), (subject(10), DataKey::random())];
    assert!(matches!(v.create_many(&clash).await, Err(StorageError::Conflict(_))));
    assert_eq!(v.get(&subject(10)).await.unwrap(), KeyState::Live(many[0].1.clone()), "never replaced");
    assert!(v.create_many(&[("bad subject".to_string(), DataKey::random())]).await.is_err());

    // Keys never show in Debug output.
    assert_eq!(format!("{kb:?}"), "DataKey(***)");
}
