//! Lease-based leader election (coordination.k8s.io/v1 Lease in kube-system), as upstream's
//! components do it: a candidate takes the Lease when it is free or when its holder has not
//! renewed it for a whole lease duration *as observed locally* (so clocks need not agree),
//! the leader renews it every retry period, and a leader that cannot renew within the renew
//! deadline stops leading. Every write is a compare-and-swap on the Lease's resourceVersion.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    /// The Lease's name, e.g. `kube-scheduler`.
    pub name: String,
    /// Who we are; must differ between candidates (and stay the same across restarts of
    /// one, so a restarted leader gets its Lease back at once).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Upstream's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(name: &str, identity: &str) -> Self {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What the candidate last saw of the Lease, and when (by the local monotonic clock).
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    at: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    clock: Arc<dyn Clock>,
    observed: Option<Observed>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector").field("config", &self.config).finish_non_exhaustive()
    }
}

enum Attempt {
    Leading,
    NotLeading,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig, clock: Arc<dyn Clock>) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        LeaderElector { api, config, clock, observed: None }
    }

    /// Competes for the Lease until `cancel`; while leading, runs `lead` with a token that
    /// is cancelled when leadership is lost (then competes again). On `cancel` the Lease is
    /// released so another candidate can take over at once.
    pub async fn run<F, Fut>(mut self, cancel: CancellationToken, lead: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            // Candidate.
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                if let Attempt::Leading = self.try_acquire_or_renew().await {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
            let leading = cancel.child_token();
            let task = tokio::spawn(lead(leading.clone()));
            let mut last_renew = Instant::now();
            let lost = loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                    _ = cancel.cancelled() => break false,
                }
                match self.try_acquire_or_renew().await {
                    Attempt::Leading => last_renew = Instant::now(),
                    Attempt::NotLeading if self.held_by_other() => break true,
                    Attempt::NotLeading => {
                        if last_renew.elapsed() >= self.config.renew_deadline {
                            break true;
                        }
                    }
                }
            };
            leading.cancel();
            let _ = task.await;
            if lost {
                tracing::warn!(lease = %self.config.name, "leadership lost");
            } else {
                self.release().await;
                return;
            }
        }
    }

    fn held_by_other(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| !o.holder.is_empty() && o.holder != self.config.identity)
    }

    fn lease_spec(&self, transitions: i32, acquire_time: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(self.clock.now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs() as i32),
            acquire_time: Some(acquire_time.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Attempt {
        let timeout = self.config.renew_deadline.min(self.config.lease_duration);
        match tokio::time::timeout(timeout, self.attempt()).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::debug!(lease = %self.config.name, error = %e, "leader election attempt failed");
                Attempt::NotLeading
            }
            Err(_) => Attempt::NotLeading,
        }
    }

    async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
        let pp = PostParams::default();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.lease_spec(0, None)),
            };
            self.api.create(&pp, &lease).await?;
            self.observe(&self.config.identity.clone(), None);
            return Ok(Attempt::Leading);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let changed = match &self.observed {
            Some(o) => o.holder != holder || o.renew_time != spec.renew_time,
            None => true,
        };
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time: spec.renew_time.clone(),
                at: Instant::now(),
            });
        }
        let ours = holder == self.config.identity;
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.config.lease_duration);
        let expired = self.observed.as_ref().is_some_and(|o| o.at.elapsed() >= duration);
        if !holder.is_empty() && !ours && !expired {
            return Ok(Attempt::NotLeading);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + if ours { 0 } else { 1 };
        let acquire = if ours { spec.acquire_time.clone() } else { None };
        lease.spec = Some(self.lease_spec(transitions, acquire));
        // replace carries the resourceVersion we read: a concurrent writer makes this a 409.
        let written = self.api.replace(&self.config.name, &pp, &lease).await?;
        let renew = written.spec.and_then(|s| s.renew_time);
        self.observe(&self.config.identity.clone(), renew);
        Ok(Attempt::Leading)
    }

    fn observe(&mut self, holder: &str, renew_time: Option<MicroTime>) {
        self.observed =
            Some(Observed { holder: holder.to_owned(), renew_time, at: Instant::now() });
    }

    /// Gives the Lease up (holder cleared, 1 s duration) so a successor need not wait.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let _ = tokio::time::timeout(
            self.config.retry_period,
            self.api.replace(&self.config.name, &PostParams::default(), &lease),
        )
        .await;
    }
}

/// True when `lease` names `identity` as holder and its renew time plus duration has not
/// passed at `now` (by the lease's own timestamps; used by observers such as node lifecycle).
pub fn lease_is_current(lease: &Lease, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return false };
    let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return false;
    };
    crate::clock::add(renew.0, Duration::from_secs(secs.max(0) as u64)) > now
}
