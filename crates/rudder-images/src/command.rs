//! A container's process arguments from its pod spec and its image, with upstream's rules
//! (what dockershim did and containerd's CRI plugin does):
//! - `command` given: it replaces the image's Entrypoint, and the image's Cmd is NOT used,
//!   even when `args` is empty: the process is `command + args`;
//! - only `args` given: `Entrypoint + args`;
//! - neither: `Entrypoint + Cmd`.
//!
//! An image Entrypoint of exactly `[""]` means "none" (set by `ENTRYPOINT [""]`).
//! `$(VAR)` expansion is the kubelet's, done before this.

use crate::manifest::ImageConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error(
        "no command specified: the pod gives no command or args and the image has no Entrypoint or Cmd"
    )]
    Empty,
}

pub fn resolve_command(
    image: &ImageConfig,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, CommandError> {
    let mut process: Vec<String> = if command.is_empty() {
        if image.entrypoint.len() == 1 && image.entrypoint[0].is_empty() {
            Vec::new()
        } else {
            image.entrypoint.clone()
        }
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        process.extend_from_slice(args);
    } else if command.is_empty() {
        process.extend_from_slice(&image.cmd);
    }
    if process.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig { entrypoint: v(entrypoint), cmd: v(cmd), ..Default::default() }
    }

    #[test]
    fn neither_uses_entrypoint_and_cmd() {
        let img = image(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]);
        assert_eq!(
            resolve_command(&img, &[], &[]).unwrap(),
            v(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(resolve_command(&image(&[], &["sh"]), &[], &[]).unwrap(), v(&["sh"]));
    }

    #[test]
    fn command_replaces_entrypoint_and_drops_cmd() {
        let img = image(&["/entry"], &["default-arg"]);
        assert_eq!(resolve_command(&img, &v(&["sleep"]), &[]).unwrap(), v(&["sleep"]));
        assert_eq!(
            resolve_command(&img, &v(&["sleep"]), &v(&["10"])).unwrap(),
            v(&["sleep", "10"])
        );
    }

    #[test]
    fn args_replace_cmd_and_keep_entrypoint() {
        let img = image(&["/entry"], &["default-arg"]);
        assert_eq!(resolve_command(&img, &[], &v(&["x", "y"])).unwrap(), v(&["/entry", "x", "y"]));
        // No entrypoint: args are the whole process.
        assert_eq!(resolve_command(&image(&[], &["sh"]), &[], &v(&["id"])).unwrap(), v(&["id"]));
    }

    #[test]
    fn empty_entrypoint_marker_and_nothing_at_all() {
        let img = image(&[""], &["sh", "-c", "true"]);
        assert_eq!(resolve_command(&img, &[], &[]).unwrap(), v(&["sh", "-c", "true"]));
        assert_eq!(resolve_command(&image(&[], &[]), &[], &[]), Err(CommandError::Empty));
        assert_eq!(resolve_command(&image(&[""], &[]), &[], &[]), Err(CommandError::Empty));
    }
}
