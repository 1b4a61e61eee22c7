//! Paging `GET /v1/systems` while systems come and go: keyset paging hands out every system
//! that exists for the whole walk exactly once; bad paging values get 400 with a message.

use std::collections::{BTreeMap, BTreeSet};

use authplug_store::NewSystem;
use axum::http::{Method, StatusCode};

use crate::tests::{Lab, ADMIN};

fn new_system(id: &str) -> NewSystem {
    NewSystem {
        id: id.into(),
        scheme: "api_key".into(),
        parameters: BTreeMap::from([("connector".into(), serde_json::json!({"name": "shop"}))]),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_walk_through_the_pages_sees_each_lasting_system_once_while_others_come_and_go() {
    let lab = Lab::new();
    let store = lab.state.engine.store().clone();
    let original: Vec<String> = (0..240).map(|i| format!("sys-{i:04}")).collect();
    for id in &original {
        store.create(new_system(id), "test").unwrap();
    }
    let mut deleted = BTreeSet::new();
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for round in 0.. {
        let path = match &cursor {
            Some(c) => format!("/v1/systems?limit=37&cursor={c}"),
            None => "/v1/systems?limit=37".to_owned(),
        };
        let (status, _, page) = lab.call(Method::GET, &path, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let systems = page["systems"].as_array().unwrap();
        assert!(systems.len() <= 37);
        seen.extend(systems.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        // Between pages: systems inserted before and after the cursor, and originals deleted
        // both behind it and ahead of it.
        for at in [round * 13 % 240, (round * 29 + 7) % 240] {
            let id = format!("sys-{at:04}-new-{round}");
            store.create(new_system(&id), "test").unwrap();
        }
        for at in [(round * 17 + 3) % 240, (round * 41 + 11) % 240] {
            if store.delete(&original[at], "test").unwrap() {
                deleted.insert(original[at].clone());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(round < 100, "the walk ends");
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no system is handed out twice");
    for id in original.iter().filter(|id| !deleted.contains(*id)) {
        assert!(unique.contains(id), "{id} existed for the whole walk and was not seen");
    }
    assert!(!deleted.is_empty() && seen.len() > 200);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in id order");
}

#[tokio::test]
async fn filters_narrow_the_listing_and_bad_paging_values_are_refused_with_a_message() {
    let lab = Lab::new();
    let store = lab.state.engine.store().clone();
    store.create(new_system("a"), "test").unwrap();
    store
        .create(NewSystem { id: "b".into(), scheme: "oauth2".into(), ..Default::default() }, "t")
        .unwrap();
    let ids = |page: &serde_json::Value| -> Vec<String> {
        let systems = page["systems"].as_array().unwrap();
        systems.iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
    };
    for (query, expected) in [
        ("scheme=oauth2", vec!["b"]),
        ("connector=shop", vec!["a"]),
        ("state=needs_reauth", vec![]),
        ("state=active&limit=1", vec!["a"]),
    ] {
        let path = format!("/v1/systems?{query}");
        let (status, _, page) = lab.call(Method::GET, &path, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(ids(&page), expected, "{query}");
    }
    for (query, said) in [
        ("limit=0", "limit must be a whole number from 1 to 1000"),
        ("limit=1001", "limit must be a whole number from 1 to 1000"),
        ("limit=ten", "not \"ten\""),
        ("cursor=zz", "the cursor is not one a listing gave out"),
        ("state=broken", "state must be active or needs_reauth"),
        ("colour=red", "unknown field `colour`"),
    ] {
        let path = format!("/v1/systems?{query}");
        let (status, _, answer) = lab.call(Method::GET, &path, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(said), "{query}: {answer}");
    }
}
