//! `rudder image pull|import|ls|rm`: the node's image store by hand.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rudder_images::cli::{ProgressLine, format_image_table};
use rudder_images::{Auth, Credentials, ImageRef, ImageStore, Removed};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pull an image from its registry (`busybox`, `127.0.0.1:5000/app:1.0`, `x@sha256:...`).
    Pull {
        reference: String,
        /// Basic-auth credentials for the image's registry.
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
        /// A docker config JSON (`~/.docker/config.json`, an imagePullSecret's
        /// `.dockerconfigjson`) to take credentials from.
        #[arg(long)]
        docker_config: Option<PathBuf>,
        /// Registries reached over plain HTTP (loopback registries always are, as with Docker).
        #[arg(long, value_delimiter = ',')]
        insecure_registry: Vec<String>,
    },
    /// Import OCI-layout or docker-archive (`docker save`) tarballs.
    Import { files: Vec<PathBuf> },
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Remove images (by name, digest or ID prefix), then delete layers nothing uses.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
}

fn is_loopback_registry(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(registry);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Runs an image command against the image store of the node with `data_dir`.
pub async fn run(data_dir: &Path, command: ImageCommand) -> Result<()> {
    let root = &crate::agent::images_dir(data_dir);
    let options = || crate::agent::store_options(data_dir);
    match command {
        ImageCommand::Pull { reference, creds, docker_config, insecure_registry } => {
            let image = ImageRef::parse(&reference)
                .with_context(|| format!("invalid image reference {reference:?}"))?;
            let mut options = options();
            options.registry.insecure_registries = insecure_registry;
            if is_loopback_registry(&image.registry) {
                options.registry.insecure_registries.push(image.registry.clone());
            }
            let store = ImageStore::open(root, options)?;
            let mut credentials = Credentials::default();
            if let Some(path) = docker_config {
                let json =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                credentials = Credentials::from_docker_config(&json)
                    .with_context(|| format!("parsing {}", path.display()))?;
            }
            if let Some(c) = creds {
                let Some((username, password)) = c.split_once(':') else {
                    bail!("--creds must be USER:PASSWORD");
                };
                credentials.insert(
                    &image.registry,
                    Auth::Basic { username: username.into(), password: password.into() },
                );
            }
            let progress = ProgressLine::stderr();
            let record = store.pull(&reference, &credentials, &progress).await?;
            println!("{}", record.digest);
            Ok(())
        }
        ImageCommand::Import { files } => {
            if files.is_empty() {
                bail!("no tarball given");
            }
            let store = ImageStore::open(root, options())?;
            for f in files {
                for r in
                    store.import(&f).await.with_context(|| format!("importing {}", f.display()))?
                {
                    let name = r.names.first().cloned().unwrap_or_else(|| "<none>".into());
                    println!("{name} {}", r.digest);
                }
            }
            Ok(())
        }
        ImageCommand::Ls => {
            let store = ImageStore::open(root, options())?;
            print!("{}", format_image_table(&store.list()?));
            Ok(())
        }
        ImageCommand::Rm { references } => {
            let store = ImageStore::open(root, options())?;
            let mut missing = Vec::new();
            for r in &references {
                match store.get(r)? {
                    None => missing.push(r.clone()),
                    Some(image) => {
                        let mut removed = store.remove(r)?;
                        if let Removed::Untagged = removed {
                            println!("Untagged: {r}");
                            // As `crictl rmi` and `docker rmi`: once no tag is left, the
                            // repo@digest names go too and the image is deleted.
                            let left = store.get(&image.digest.to_string())?;
                            if let Some(left) = left.filter(|l| l.names.is_empty()) {
                                for d in &left.repo_digests {
                                    removed = store.remove(d)?;
                                }
                            }
                        }
                        if let Removed::Deleted(rec) = removed {
                            println!("Deleted: {}", rec.digest);
                        }
                    }
                }
            }
            let gc = store.gc().await?;
            tracing::debug!(?gc, "image gc");
            if !missing.is_empty() {
                bail!("no such image: {}", missing.join(", "));
            }
            Ok(())
        }
    }
}
