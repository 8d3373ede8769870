//! Label and field selectors applied to objects.

use rudder_api::labels::Selector;
use serde_json::Value;

use crate::object;
use crate::status::ApiError;

/// A field selector: `metadata.name=x,spec.nodeName!=y`. Fields are dotted paths; a
/// missing field compares as the empty string (so `spec.nodeName=` selects unscheduled pods).
#[derive(Clone, Debug, Default)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector: '{part}'")));
            };
            terms.push((field.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(FieldSelector { terms })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_with(|field| field_text(object::path(obj, field)))
    }

    /// Whether the terms hold for the field values `field` gives (as [`field_text`]).
    pub fn matches_with(&self, mut field: impl FnMut(&str) -> String) -> bool {
        self.terms.iter().all(|(name, equal, want)| (field(name) == *want) == *equal)
    }
}

/// A field's value as a field selector compares it: a string as is, a missing field or null
/// as "", anything else as its JSON text.
pub fn field_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Both selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = match label_selector {
            Some(s) => Selector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => Selector::default(),
        };
        let fields = match field_selector {
            Some(s) => FieldSelector::parse(s)?,
            None => FieldSelector::default(),
        };
        Ok(Filter { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(&object::labels(obj)))
            && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "a", "namespace": "default"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&pod);
        assert!(m("metadata.name=a"));
        assert!(m("spec.nodeName==n1,status.phase!=Pending"));
        assert!(!m("metadata.namespace=kube-system"));
        assert!(m("spec.schedulerName="));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
