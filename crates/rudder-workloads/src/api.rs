//! API calls with a bound on how long each may take, mapped to this crate's errors.

use std::future::Future;
use std::time::Duration;

use crate::Error;

/// Bound on one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

pub use rudder_client::api::{Target, delete_exactly};

/// Runs `request` with [`REQUEST_TIMEOUT`].
pub async fn call<T>(
    target: Target<'_>,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    Ok(rudder_client::api::call(target, REQUEST_TIMEOUT, request).await?)
}

/// What the shared helpers need of a namespaced Kubernetes type.
pub trait NamespacedObject:
    k8s_openapi::Resource<Scope = k8s_openapi::NamespaceResourceScope>
    + kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> NamespacedObject for K where
    K: k8s_openapi::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A namespaced API of `K` for `obj`'s namespace, and the request target naming `obj`.
pub fn api_for<'a, K: NamespacedObject, O: kube::Resource>(
    client: &kube::Client,
    verb: &'static str,
    obj: &'a O,
) -> (kube::Api<K>, Target<'a>) {
    let meta = obj.meta();
    let namespace = meta.namespace.as_deref().unwrap_or("");
    let name = meta.name.as_deref().unwrap_or("");
    (
        kube::Api::namespaced(client.clone(), namespace),
        Target { verb, kind: K::KIND, namespace, name },
    )
}
