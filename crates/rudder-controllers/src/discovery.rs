//! The resources the API serves, from discovery (aggregated discovery when the server has
//! it, else the per-group documents): what the garbage collector watches and the namespace
//! controller empties, and how an ownerReference's `apiVersion`/`kind` becomes a URL.

use kube::Client;
use kube::core::ApiResource;
use kube::discovery::{Discovery, Scope};

use crate::error::{Error, REQUEST_TIMEOUT};

/// One served resource at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedResource {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    /// At its group's preferred version.
    pub preferred: bool,
}

impl ServedResource {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    pub fn supports_all(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.supports(v))
    }

    /// `pods` or `deployments.apps`.
    pub fn qualified_name(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }
}

/// Every served resource (all versions).
#[derive(Clone, Debug, Default)]
pub struct ServedResources {
    all: Vec<ServedResource>,
}

impl ServedResources {
    pub fn new(all: Vec<ServedResource>) -> Self {
        ServedResources { all }
    }

    /// Asks the API server (bounded by twice the request timeout).
    pub async fn discover(client: &Client) -> Result<Self, Error> {
        let aggregated =
            tokio::time::timeout(REQUEST_TIMEOUT, Discovery::new(client.clone()).run_aggregated())
                .await;
        let discovery = match aggregated {
            Ok(Ok(d)) => d,
            _ => tokio::time::timeout(REQUEST_TIMEOUT, Discovery::new(client.clone()).run())
                .await
                .map_err(|_| Error::Discovery("timed out".into()))?
                .map_err(|e| Error::Discovery(e.to_string()))?,
        };
        let mut all = Vec::new();
        for group in discovery.groups() {
            let preferred = group.preferred_version_or_latest().to_owned();
            for version in group.versions() {
                for (resource, caps) in group.versioned_resources(version) {
                    all.push(ServedResource {
                        resource,
                        namespaced: caps.scope == Scope::Namespaced,
                        verbs: caps.operations.clone(),
                        preferred: version == preferred,
                    });
                }
            }
        }
        all.sort_by(|a, b| {
            (&a.resource.group, &a.resource.plural, !a.preferred).cmp(&(
                &b.resource.group,
                &b.resource.plural,
                !b.preferred,
            ))
        });
        Ok(ServedResources { all })
    }

    /// Each resource once, at its group's preferred version.
    pub fn preferred(&self) -> impl Iterator<Item = &ServedResource> {
        self.all.iter().filter(|r| r.preferred)
    }

    /// The resource of `kind` in the group of `api_version`: that version if served, else
    /// the preferred one.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<&ServedResource> {
        let group = crate::meta::group_of(api_version);
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let mut candidates =
            self.all.iter().filter(|r| r.resource.group == group && r.resource.kind == kind);
        let exact = candidates.clone().find(|r| r.resource.version == version);
        exact.or_else(|| candidates.find(|r| r.preferred))
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// A resource description for tests and tables: `ApiResource` from its parts.
pub fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() { version.into() } else { format!("{group}/{version}") },
        kind: kind.into(),
        plural: plural.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        preferred: bool,
    ) -> ServedResource {
        ServedResource {
            resource: api_resource(group, version, kind, plural),
            namespaced: true,
            verbs: vec!["list".into(), "watch".into(), "delete".into()],
            preferred,
        }
    }

    #[test]
    fn kinds_resolve_to_their_version_or_the_preferred_one() {
        let r = ServedResources::new(vec![
            served(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                true,
            ),
            served(
                "autoscaling",
                "v1",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                false,
            ),
            served("", "v1", "Pod", "pods", true),
        ]);
        let hpa = r.for_kind("autoscaling/v1", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(hpa.resource.version, "v1");
        let hpa = r.for_kind("autoscaling/v9", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(hpa.resource.version, "v2");
        assert_eq!(r.for_kind("v1", "Pod").unwrap().qualified_name(), "pods");
        assert!(r.for_kind("apps/v1", "Pod").is_none());
        assert_eq!(r.preferred().count(), 2);
    }
}
