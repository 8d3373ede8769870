//! The node's image store (`rudder-images`) as the runtime's [`ImageProvider`].

use std::sync::Arc;

use async_trait::async_trait;
use rudder_images::{Credentials, ImageRecord, ImageStore, NoProgress};
use rudder_runtime::{ImageInfo, Result, RuntimeError};

use crate::providers::{ImageProvider, ResolvedImage};
use crate::spec::ImageDefaults;

#[derive(Debug, Clone)]
pub struct ImageStoreAdapter {
    store: Arc<ImageStore>,
}

impl ImageStoreAdapter {
    pub fn new(store: Arc<ImageStore>) -> Self {
        ImageStoreAdapter { store }
    }

    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }
}

fn store_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Internal(format!("image store: {e}"))
}

/// The CRI view of an image record.
pub fn image_info(record: &ImageRecord) -> ImageInfo {
    ImageInfo {
        id: record.digest.to_string(),
        repo_tags: record.names.clone(),
        repo_digests: record.repo_digests.clone(),
        size_bytes: record.size_bytes,
    }
}

#[async_trait]
impl ImageProvider for ImageStoreAdapter {
    async fn pull(&self, image: &str, credentials: &[Vec<u8>]) -> Result<ImageInfo> {
        let creds = Credentials::from_docker_configs(credentials.iter().map(Vec::as_slice))
            .map_err(|e| RuntimeError::ImagePull {
                image: image.to_owned(),
                message: format!("invalid pull secret: {e}"),
            })?;
        let record = self.store.pull(image, &creds, &NoProgress).await.map_err(|e| {
            RuntimeError::ImagePull { image: image.to_owned(), message: e.to_string() }
        })?;
        Ok(image_info(&record))
    }

    async fn resolve(&self, image: &str) -> Result<Option<ResolvedImage>> {
        let store = self.store.clone();
        let image = image.to_owned();
        tokio::task::spawn_blocking(move || {
            let Some(record) = store.get(&image).map_err(store_err)? else {
                return Ok(None);
            };
            let c = &record.config;
            Ok(Some(ResolvedImage {
                info: image_info(&record),
                layers: store.layer_dirs(&record),
                defaults: ImageDefaults {
                    entrypoint: c.entrypoint.clone(),
                    cmd: c.cmd.clone(),
                    env: c.env.clone(),
                    working_dir: Some(c.working_dir.clone()).filter(|w| !w.is_empty()),
                    stop_signal: c.stop_signal.clone(),
                },
                user: c.user.clone(),
            }))
        })
        .await
        .map_err(store_err)?
    }

    async fn list(&self) -> Result<Vec<ImageInfo>> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            Ok(store.list().map_err(store_err)?.iter().map(image_info).collect())
        })
        .await
        .map_err(store_err)?
    }

    async fn remove(&self, image: &str) -> Result<()> {
        let store = self.store.clone();
        let image = image.to_owned();
        tokio::task::spawn_blocking(move || match store.remove(&image) {
            Ok(_) => Ok(()),
            Err(e) => Err(store_err(e)),
        })
        .await
        .map_err(store_err)?
    }

    async fn pin(&self, owner: &str, image: &ResolvedImage) -> Result<()> {
        let (store, owner, layers) = (self.store.clone(), owner.to_owned(), image.layers.clone());
        let name = image.info.repo_tags.first().cloned().unwrap_or_else(|| image.info.id.clone());
        tokio::task::spawn_blocking(move || match store.pin(&owner, &layers) {
            Ok(()) => Ok(()),
            Err(e @ rudder_images::store::StoreError::LayerMissing(_)) => {
                Err(RuntimeError::ImagePull { image: name, message: e.to_string() })
            }
            Err(e) => Err(store_err(e)),
        })
        .await
        .map_err(store_err)?
    }

    async fn unpin(&self, owner: &str) -> Result<()> {
        let (store, owner) = (self.store.clone(), owner.to_owned());
        tokio::task::spawn_blocking(move || store.unpin(&owner).map_err(store_err))
            .await
            .map_err(store_err)?
    }
}
