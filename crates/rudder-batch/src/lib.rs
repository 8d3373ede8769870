//! The batch controllers of the controller manager, shaped after upstream's
//! (`pkg/controller/job`, `pkg/controller/cronjob`, `pkg/controller/ttlafterfinished`):
//!
//! - [`job`]: runs a Job's pods to completion (one shot, fixed completions with parallelism,
//!   work queue; `Indexed` completion mode), replaces failed pods with exponential back-off up
//!   to `backoffLimit`, applies `podFailurePolicy`, `activeDeadlineSeconds` and `suspend`, and
//!   counts finished pods through the `batch.kubernetes.io/job-tracking` finalizer and
//!   `status.uncountedTerminatedPods`, so counts survive pod deletion;
//! - [`cronjob`]: creates Jobs on a cron schedule ([`cron`]: 5-field schedules, macros, time
//!   zones from the system tz database), with concurrency policies, starting deadlines and
//!   history limits;
//! - [`ttlafterfinished`]: deletes finished Jobs `ttlSecondsAfterFinished` after they finished.
//!
//! Each is `run(ctx, config, cancel)` over the process's shared informers; handlers only
//! enqueue keys; decisions are pure functions unit-tested without a server.

pub use rudder_cron as cron;
pub mod cronjob;
pub mod error;
pub mod job;
pub mod ttlafterfinished;

pub use cronjob::CronJobConfig;
pub use error::Error;
pub use job::JobConfig;
pub use ttlafterfinished::TtlAfterFinishedConfig;
