//! Pushing test images to a [`Registry`] with oci-client's push API: blobs (skipped when
//! present), then the manifest bytes exactly as built (so the digest stays the test image's),
//! and image indexes over several images.

use http::HeaderValue;

use super::TestingError;
use super::image::TestImage;
use super::registry::Registry;
use crate::digest::Digest;
use crate::manifest;
use crate::reference::ImageRef;
use crate::registry::install_crypto_provider;

fn client(registry: &Registry) -> (oci_client::Client, oci_client::secrets::RegistryAuth) {
    install_crypto_provider();
    let config = oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(vec![registry.host().to_owned()]),
        connect_timeout: Some(std::time::Duration::from_secs(5)),
        read_timeout: Some(std::time::Duration::from_secs(30)),
        ..Default::default()
    };
    let auth = match registry.auth() {
        Some((u, p)) => oci_client::secrets::RegistryAuth::Basic(u.to_owned(), p.to_owned()),
        None => oci_client::secrets::RegistryAuth::Anonymous,
    };
    (oci_client::Client::new(config), auth)
}

/// `name` relative to the registry (`library/busybox:1.0`) or a full reference on it.
fn target(registry: &Registry, name: &str) -> Result<oci_client::Reference, TestingError> {
    let full =
        if name.starts_with(registry.host()) { name.to_owned() } else { registry.reference(name) };
    let r = ImageRef::parse(&full).map_err(|e| TestingError::Push(e.to_string()))?;
    Ok(r.to_oci())
}

fn push_err(what: &str) -> impl FnOnce(oci_client::errors::OciDistributionError) -> TestingError {
    let what = what.to_owned();
    move |e| TestingError::Push(format!("{what}: {e}"))
}

async fn push_blobs(
    client: &oci_client::Client,
    auth: &oci_client::secrets::RegistryAuth,
    reference: &oci_client::Reference,
    image: &TestImage,
) -> Result<(), TestingError> {
    client
        .auth(reference, auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(push_err("auth"))?;
    let mut blobs: Vec<(&Digest, &Vec<u8>)> =
        image.layers.iter().map(|l| (&l.digest, &l.blob)).collect();
    blobs.push((&image.config_digest, &image.config));
    for (digest, data) in blobs {
        if client.blob_exists(reference, digest.as_str()).await.map_err(push_err("blob HEAD"))? {
            continue;
        }
        client
            .push_blob(reference, data.clone(), digest.as_str())
            .await
            .map_err(push_err(&format!("blob {digest}")))?;
    }
    Ok(())
}

/// Pushes `image` under `name` (`library/busybox:1.0`); returns its manifest digest.
pub async fn push(
    registry: &Registry,
    name: &str,
    image: &TestImage,
) -> Result<Digest, TestingError> {
    let (client, auth) = client(registry);
    let reference = target(registry, name)?;
    push_blobs(&client, &auth, &reference, image).await?;
    client
        .push_manifest_raw(
            &reference,
            image.manifest.clone(),
            HeaderValue::from_static(image.manifest_media_type),
        )
        .await
        .map_err(push_err("manifest"))?;
    Ok(image.manifest_digest.clone())
}

/// Pushes every image (by digest) and an OCI image index over them under `name`, each entry
/// with platform linux/<the image's architecture>; returns the index digest.
pub async fn push_index(
    registry: &Registry,
    name: &str,
    images: &[&TestImage],
) -> Result<Digest, TestingError> {
    let (client, auth) = client(registry);
    let reference = target(registry, name)?;
    let mut entries = Vec::new();
    for image in images {
        push_blobs(&client, &auth, &reference, image).await?;
        let by_digest = reference.clone_with_digest(image.manifest_digest.to_string());
        client
            .push_manifest_raw(
                &by_digest,
                image.manifest.clone(),
                HeaderValue::from_static(image.manifest_media_type),
            )
            .await
            .map_err(push_err("manifest"))?;
        let mut platform = serde_json::json!({"os": "linux", "architecture": image.architecture});
        if image.architecture == "arm64" {
            platform["variant"] = "v8".into();
        }
        entries.push(serde_json::json!({
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.as_str(),
            "size": image.manifest.len(),
            "platform": platform,
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": entries,
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| TestingError::Push(e.to_string()))?;
    let digest = Digest::of(&bytes);
    client
        .push_manifest_raw(&reference, bytes, HeaderValue::from_static(manifest::OCI_INDEX))
        .await
        .map_err(push_err("index"))?;
    Ok(digest)
}
