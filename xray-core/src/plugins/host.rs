//! What the host itself says: its name, the container id in the cgroup files, and bounded
//! reads of small files.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Largest configuration file read (the Beanstalk `environment.conf` is about 100 bytes).
pub(super) const MAX_FILE: usize = 64 * 1024;
/// Largest `/proc` file read: a container's `mountinfo` is a few kilobytes, a host's with
/// many mounts can be far more, and the line that names the container comes early.
const MAX_PROC_FILE: usize = 256 * 1024;
/// Linux keeps the kernel's host name here (the UTS namespace's, so the container's).
const PROC_HOSTNAME: &str = "/proc/sys/kernel/hostname";
const ETC_HOSTNAME: &str = "/etc/hostname";

/// Reads at most `max` bytes of `path`; a longer file is refused.
pub(super) fn read_bounded(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{} is larger than {} KiB", path.display(), max / 1024),
        ));
    }
    Ok(out)
}

/// The host name, as the official SDKs take it for `aws.ecs.container` and `aws.eks.pod`
/// (`socket.gethostname()`, `os.Hostname()`, `InetAddress.getLocalHost().getHostName()`):
/// `HOSTNAME` (set in every Docker and Kubernetes container), else the kernel's
/// (`/proc/sys/kernel/hostname`), else `/etc/hostname`. Without a libc binding this is what
/// `gethostname(2)` returns inside a container.
pub(super) fn hostname(from_env: Option<String>) -> Option<String> {
    from_env
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| first_line(Path::new(PROC_HOSTNAME)))
        .or_else(|| first_line(Path::new(ETC_HOSTNAME)))
}

fn first_line(path: &Path) -> Option<String> {
    let bytes = read_bounded(path, 4096).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// The full (64 hex digit) id of the container this process runs in, from `cgroup` (cgroup
/// v1: every line ends in the container's cgroup, e.g. `/docker/<id>`,
/// `/kubepods/.../cri-containerd-<id>.scope`, `/ecs/<task>/<id>`), else from `mountinfo`
/// (cgroup v2 shows `0::/` in `cgroup`; the runtime's bind mounts of `hostname`,
/// `resolv.conf` and `hosts` name the container directory instead).
///
/// The Java SDK's `DockerUtils` takes the last 64 characters of the first long `cgroup` line;
/// this takes a run of exactly 64 hex digits, so a line that ends in `.scope` or in a
/// non-container cgroup yields nothing rather than a wrong id. Under cgroup v2 with a private
/// cgroup namespace and containerd (the Kubernetes default), no file a container can read names
/// its id: then there is none.
pub(super) fn container_id(cgroup: &Path, mountinfo: &Path) -> Option<String> {
    if let Some(id) = read_text(cgroup).as_deref().and_then(id_in_cgroup) {
        return Some(id);
    }
    read_text(mountinfo).as_deref().and_then(id_in_mountinfo)
}

fn read_text(path: &Path) -> Option<String> {
    let bytes = read_bounded(path, MAX_PROC_FILE).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn id_in_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| hex64_runs(line).last().map(|(_, id)| id.to_owned()))
}

/// What precedes a container id in the mount sources of the container runtimes: Docker
/// `/var/lib/docker/containers/<id>/hostname`, Podman `.../overlay-containers/<id>/userdata/`,
/// and the cgroup mount when the cgroup namespace is the host's (`docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`, `/docker/<id>`).
/// containerd's `/sandboxes/<id>/` is the pod's sandbox, not this container, and is skipped.
const ID_PREFIXES: [&str; 6] = [
    "containers/",
    "docker-",
    "cri-containerd-",
    "crio-",
    "libpod-",
    "/docker/",
];

fn id_in_mountinfo(text: &str) -> Option<String> {
    text.lines()
        .filter(|line| !line.contains("/sandboxes/"))
        .find_map(|line| {
            hex64_runs(line)
                .find(|(start, _)| {
                    let before = line.get(..*start).unwrap_or_default();
                    ID_PREFIXES.iter().any(|p| before.ends_with(p))
                })
                .map(|(_, id)| id.to_owned())
        })
}

/// Every maximal run of exactly 64 ASCII hex digits in `s`, with its byte offset.
fn hex64_runs(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if !bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
                i += 1;
                continue;
            }
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
                i += 1;
            }
            if i - start == 64 {
                // ASCII digits only, so both ends are character boundaries.
                return s.get(start..i).map(|run| (start, run));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66";

    #[test]
    fn cgroup_v1_lines() {
        for line in [
            format!("13:name=systemd:/docker/{ID}"),
            format!("11:memory:/kubepods/burstable/pod1f8b-4e2a-9c3d/{ID}"),
            format!("0::/system.slice/cri-containerd-{ID}.scope"),
            format!("9:cpu:/ecs/5a0d5ce9b6c54d5bb4ca29d6ea18a9e8/{ID}"),
        ] {
            let text = format!("12:pids:/\n{line}\n");
            assert_eq!(id_in_cgroup(&text).as_deref(), Some(ID), "{line}");
        }
        assert_eq!(id_in_cgroup("0::/\n"), None);
        // 65 hex digits is not an id.
        assert_eq!(id_in_cgroup(&format!("1:cpu:/docker/{ID}a\n")), None);
    }

    #[test]
    fn mountinfo_lines() {
        let docker = format!(
            "613 605 259:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p1 rw\n"
        );
        assert_eq!(id_in_mountinfo(&docker).as_deref(), Some(ID));
        let sandbox = format!(
            "700 690 259:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{ID}/hostname /etc/hostname rw - xfs /dev/root rw\n"
        );
        assert_eq!(id_in_mountinfo(&sandbox), None);
        let kubelet = "701 690 259:1 /var/lib/kubelet/pods/1f8b/containers/web/0a1b /dev/termination-log rw - xfs /dev/root rw\n";
        assert_eq!(id_in_mountinfo(kubelet), None);
    }
}
