//! The component registry's store (`engine::registry`) and its validation
//! (`synth_city::registry`) against a real redis-server: ownership decided inside one script
//! (bots racing for a new name: exactly one gets it), the version counted per change, the
//! per-bot bound, removal, and `resolve` copying the registry's document into a spec (bare and
//! `graph:` names; an inline document wins). Over HTTP: tests/bridge.rs
//! `bots_author_components_in_the_registry_and_use_them`.

mod common;

use common::{queue, RedisServer};
use engine::registry::{self as store, RegistryError, MAX_PER_OWNER};
use serde_json::{json, Value};
use synth_city::registry::{self, WriteError};
use trainer::zoo::spec::ExperimentSpec;

fn doc(name: &str) -> Value {
    json!({"format": "synth-city/component@1", "kind": "block", "name": name,
           "inputs": ["x"],
           "nodes": [{"id": "a", "op": "linear", "in": ["x"], "out": "d_model"},
                     {"id": "r", "op": "add", "in": ["x", "a"]}],
           "output": "r"})
}

#[tokio::test]
async fn racing_bots_one_owner_versions_bounds_and_removal() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    // eight bots write the same new name at once: one creates it, the others are refused
    let mut tasks = Vec::new();
    for i in 0..8 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let bot = format!("bot-{i}");
            registry::write(&q, Some("raced"), doc("raced"), &bot, false).await
        }));
    }
    let mut won = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok((_, w)) => won.push(w),
            Err(WriteError::Store(RegistryError::NotOwner { owner, .. })) => {
                refused += 1;
                assert!(owner.starts_with("bot-"));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((won.len(), refused), (1, 7), "{won:?}");
    assert!(won[0].created);
    assert_eq!(store::version(&q).await.unwrap(), 1);
    let owner = won[0].owner.clone();
    let a = store::get(&q, "raced").await.unwrap().unwrap();
    assert_eq!(
        (a.owner.as_str(), a.version, a.kind.as_str()),
        (owner.as_str(), 1, "block")
    );
    assert_eq!(a.document, doc("raced"));

    // the owner overwrites (a new version, the same owner); the operator may too, owner kept
    let (_, w) = registry::write(&q, Some("raced"), doc("raced"), &owner, false)
        .await
        .unwrap();
    assert_eq!((w.created, w.version), (false, 2));
    let (_, w) = registry::write(&q, Some("raced"), doc("raced"), "default", true)
        .await
        .unwrap();
    assert_eq!((w.version, w.owner.as_str()), (3, owner.as_str()));

    // a bot holds at most MAX_PER_OWNER components
    for i in 0..MAX_PER_OWNER {
        registry::write(&q, Some(&format!("c{i}")), doc("x"), "hoarder", false)
            .await
            .unwrap();
    }
    let e = registry::write(&q, Some("one_more"), doc("x"), "hoarder", false)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WriteError::Store(RegistryError::Full { .. })),
        "{e}"
    );
    assert!(store::get(&q, "one_more").await.unwrap().is_none());

    // removal: not another bot's, not a built-in, not twice
    let e = registry::remove(&q, "c0", "bot-x", false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("belongs to bot \"hoarder\""), "{e}");
    let e = registry::remove(&q, "TCNBlock", "default", true)
        .await
        .unwrap_err();
    assert!(matches!(e, WriteError::Builtin(..)), "{e}");
    let before = store::version(&q).await.unwrap();
    assert_eq!(
        registry::remove(&q, "c0", "hoarder", false).await.unwrap(),
        before + 1
    );
    let e = registry::remove(&q, "c0", "hoarder", false)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WriteError::Store(RegistryError::Missing { .. })),
        "{e}"
    );
    assert_eq!(store::list(&q).await.unwrap().len(), MAX_PER_OWNER);
}

#[tokio::test]
async fn resolve_copies_registry_documents_into_specs() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    registry::write(&q, None, doc("mine"), "bot-a", false)
        .await
        .unwrap();
    // a bare name that is no built-in, and graph:<name>
    for name in ["mine", "graph:mine"] {
        let mut spec = ExperimentSpec::new(&[name, "LSTMBlock"], "GBMHead");
        let used = registry::resolve(&q, &mut spec).await.unwrap();
        assert_eq!(used.len(), 1);
        assert_eq!((used[0].owner.as_str(), used[0].version), ("bot-a", 1));
        assert_eq!(spec.model.backbone.blocks, vec!["graph:mine", "LSTMBlock"]);
        assert_eq!(spec.model.components.len(), 1);
        spec.validate().unwrap();
    }
    // an inline document wins; unknown names are left for validate()
    let mut spec = ExperimentSpec::new(&["graph:mine", "nope"], "GBMHead");
    let mut inline: trainer::zoo::graph::ComponentDoc =
        serde_json::from_value(doc("mine")).unwrap();
    inline.description = "inline".into();
    spec.model.components.push(inline);
    assert!(registry::resolve(&q, &mut spec).await.unwrap().is_empty());
    assert_eq!(spec.model.components[0].description, "inline");
    assert_eq!(spec.model.backbone.blocks[1], "nope");
    assert!(spec.validate().is_err());
}

#[test]
fn prepare_refuses_before_anything_is_stored() {
    // built-in names by any spelling the zoo accepts
    for n in ["TCNBlock", "tcn", "gbm", "GBMHead"] {
        let e = registry::prepare(Some(n), doc("x")).unwrap_err();
        assert!(matches!(e, WriteError::Builtin(..)), "{n}: {e}");
        assert!(e.to_string().contains("read-only"), "{e}");
    }
    // the size bound, before parsing
    let mut big = doc("big");
    big["description"] = json!("x".repeat(trainer::zoo::graph::MAX_BODY_BYTES));
    assert!(matches!(
        registry::prepare(None, big),
        Err(WriteError::TooLarge(_))
    ));
    // not a document; unknown fields; invalid graphs name node and field
    assert!(registry::prepare(None, json!([1]))
        .unwrap_err()
        .to_string()
        .contains("document"));
    let mut odd = doc("odd");
    odd["code"] = json!("rm -rf /");
    assert!(registry::prepare(None, odd)
        .unwrap_err()
        .to_string()
        .contains("unknown field `code`"));
    let mut bad = doc("bad");
    bad["nodes"][0]["out"] = json!(4);
    let WriteError::Invalid(issues) = registry::prepare(None, bad).unwrap_err() else {
        panic!("not invalid")
    };
    assert!(
        issues.iter().any(|i| i.node.as_deref() == Some("r")),
        "{issues:?}"
    );
    // `name` replaces the document's
    let p = registry::prepare(Some("renamed"), doc("x")).unwrap();
    assert_eq!(p.doc.name, "renamed");
    assert_eq!(p.value["name"], "renamed");
}
