//! Writes whose answer the simulator does not use. `Api::patch` decodes the returned object;
//! a Lease renewal or a pod status write does not need it, and at thousands of nodes those
//! decodes are a good part of the simulator's CPU. Errors are the same as `Api`'s.

use kube::api::{Patch, PatchParams};
use kube::{Client, Resource};

/// PATCHes `name` (or its `subresource`) like `Api::<K>::patch` / `patch_status` with default
/// parameters, and drops the returned object unread.
pub(crate) async fn patch<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    patch: &Patch<serde_json::Value>,
) -> Result<(), kube::Error> {
    let request = kube::core::Request::new(K::url_path(&(), namespace));
    let params = PatchParams::default();
    let request = match subresource {
        Some(sub) => request.patch_subresource(sub, name, &params, patch),
        None => request.patch(name, &params, patch),
    }
    .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await.map(drop)
}
