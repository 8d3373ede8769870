//! `componentstatuses` (read-only, deprecated upstream but still listed by `kubectl get cs`):
//! computed on request, never stored.

use serde_json::{Value, json};

use crate::registry::Registry;

fn status(name: &str, healthy: bool, message: &str, error: &str) -> Value {
    let mut condition =
        json!({ "type": "Healthy", "status": if healthy { "True" } else { "False" } });
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    if !error.is_empty() {
        condition["error"] = json!(error);
    }
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": { "name": name },
        "conditions": [condition],
    })
}

/// The components and their health right now.
pub async fn current(registry: &Registry) -> Vec<Value> {
    let backend = registry.store.backend();
    let storage = match registry.store.current_revision().await {
        Ok(revision) => status("storage", true, &format!("{backend} ok (revision {revision})"), ""),
        Err(e) => status("storage", false, "", &format!("{backend}: {e}")),
    };
    vec![
        status(
            "controller-manager",
            false,
            "",
            "not running: the controller manager is not part of rudder yet",
        ),
        status("scheduler", false, "", "not running: the scheduler is not part of rudder yet"),
        storage,
    ]
}

pub const DEPRECATION: &str = "v1 ComponentStatus is deprecated in v1.19+";
