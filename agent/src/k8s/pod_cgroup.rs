//! Where the kubelet puts a pod's cgroup (cgroup v2), for both of its cgroup drivers:
//!
//! | driver   | QoS        | pod cgroup (below the kubelet's cgroup root)                          |
//! |----------|------------|-----------------------------------------------------------------------|
//! | systemd  | Guaranteed | `/kubepods.slice/kubepods-pod<UID_>.slice`                            |
//! | systemd  | Burstable  | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID_>.slice` |
//! | systemd  | BestEffort | `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<UID_>.slice` |
//! | cgroupfs | Guaranteed | `/kubepods/pod<UID>`                                                  |
//! | cgroupfs | Burstable  | `/kubepods/burstable/pod<UID>`                                        |
//! | cgroupfs | BestEffort | `/kubepods/besteffort/pod<UID>`                                       |
//!
//! (`UID_` is the pod UID with `-` written as `_`, as systemd unit names need.) Containers
//! are cgroups below the pod's (`cri-containerd-ID.scope`, `crio-ID.scope`,
//! `docker-ID.scope`, or the bare ID with cgroupfs), so governing the pod cgroup governs
//! every container of the pod, and the kernel follows new ones.
//!
//! Invariant: a path is attributed to a pod only if it parses as one of these layouts
//! exactly, with a well-formed UID; anything else is `None`, never a guess.

use std::fmt;

/// The kubelet's cgroup driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `--cgroup-driver=systemd` (slices and scopes).
    Systemd,
    /// `--cgroup-driver=cgroupfs` (plain directories).
    Cgroupfs,
}

/// A pod's QoS class (`status.qosClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Requests equal limits for every container.
    Guaranteed,
    /// Some requests.
    Burstable,
    /// No requests or limits.
    BestEffort,
}

impl Qos {
    /// Parses `status.qosClass`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Guaranteed" => Some(Self::Guaranteed),
            "Burstable" => Some(Self::Burstable),
            "BestEffort" => Some(Self::BestEffort),
            _ => None,
        }
    }

    fn dir(self) -> Option<&'static str> {
        match self {
            Self::Guaranteed => None,
            Self::Burstable => Some("burstable"),
            Self::BestEffort => Some("besteffort"),
        }
    }
}

/// A pod's cgroup, as found in (or expected under) the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod UID (with dashes).
    pub uid: String,
    /// Its QoS class.
    pub qos: Qos,
    /// The driver whose layout it follows.
    pub driver: Driver,
    /// The path relative to the cgroup v2 root, e.g. `/kubepods.slice/...`.
    pub path: String,
}

impl fmt::Display for PodCgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pod {} ({:?}, {:?} driver) at {}",
            self.uid, self.qos, self.driver, self.path
        )
    }
}

/// Whether `uid` is a Kubernetes UID: 8-4-4-4-12 lower-case hex digits.
pub fn valid_uid(uid: &str) -> bool {
    let groups: Vec<&str> = uid.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The cgroup the kubelet makes for the pod `uid` of class `qos`, below `root` (the
/// kubelet's `--cgroup-root`, normally `/`). `None` for a malformed UID.
pub fn expected(driver: Driver, root: &str, qos: Qos, uid: &str) -> Option<PodCgroup> {
    if !valid_uid(uid) {
        return None;
    }
    let base = root.trim_end_matches('/');
    let path = match driver {
        Driver::Cgroupfs => match qos.dir() {
            None => format!("{base}/kubepods/pod{uid}"),
            Some(q) => format!("{base}/kubepods/{q}/pod{uid}"),
        },
        Driver::Systemd => {
            let unit = uid.replace('-', "_");
            match qos.dir() {
                None => format!("{base}/kubepods.slice/kubepods-pod{unit}.slice"),
                Some(q) => {
                    format!("{base}/kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{unit}.slice")
                }
            }
        }
    };
    Some(PodCgroup {
        uid: uid.to_owned(),
        qos,
        driver,
        path,
    })
}

/// The pod whose cgroup `path` is (the pod cgroup itself, not a container below it), in
/// either layout, below any kubelet cgroup root.
pub fn classify(path: &str) -> Option<PodCgroup> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let n = parts.len();
    // The QoS level and the pod level are the last two or three components.
    let last = *parts.last()?;
    if let Some(unit) = last.strip_suffix(".slice") {
        // systemd: kubepods-pod<U>.slice under kubepods.slice, or
        // kubepods-<q>-pod<U>.slice under kubepods-<q>.slice under kubepods.slice.
        let (qos, unit_uid, depth) = if let Some(u) = unit.strip_prefix("kubepods-pod") {
            (Qos::Guaranteed, u, 2)
        } else if let Some(u) = unit.strip_prefix("kubepods-burstable-pod") {
            (Qos::Burstable, u, 3)
        } else if let Some(u) = unit.strip_prefix("kubepods-besteffort-pod") {
            (Qos::BestEffort, u, 3)
        } else {
            return None;
        };
        if n < depth + 1 {
            return None;
        }
        let parents_ok = match qos.dir() {
            None => parts[n - 2] == "kubepods.slice",
            Some(q) => {
                parts[n - 2] == format!("kubepods-{q}.slice") && parts[n - 3] == "kubepods.slice"
            }
        };
        let uid = unit_uid.replace('_', "-");
        if !parents_ok || unit_uid.contains('-') || !valid_uid(&uid) {
            return None;
        }
        let root = parts[..n - depth].join("/");
        return expected(
            Driver::Systemd,
            if root.is_empty() { "/" } else { &root },
            qos,
            &uid,
        )
        .filter(|p| p.path == path.trim_end_matches('/'));
    }
    let uid = last.strip_prefix("pod")?;
    if !valid_uid(uid) || n < 3 {
        return None;
    }
    let (qos, depth) = match parts[n - 2] {
        "kubepods" => (Qos::Guaranteed, 2),
        "burstable" if parts[n - 3] == "kubepods" => (Qos::Burstable, 3),
        "besteffort" if parts[n - 3] == "kubepods" => (Qos::BestEffort, 3),
        _ => return None,
    };
    if n < depth + 1 {
        return None;
    }
    let root = parts[..n - depth].join("/");
    expected(
        Driver::Cgroupfs,
        if root.is_empty() { "/" } else { &root },
        qos,
        uid,
    )
}

/// Finds the pod `uid`'s cgroup among `paths` (the hierarchy's directories, relative to
/// its root): exactly one must be that pod's, else `Err` says what was found.
pub fn locate<'a>(
    uid: &str,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<PodCgroup, String> {
    if !valid_uid(uid) {
        return Err(format!("`{uid}` is not a pod UID"));
    }
    let found: Vec<PodCgroup> = paths
        .into_iter()
        .filter_map(classify)
        .filter(|p| p.uid == uid)
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("no cgroup of pod {uid} in either kubelet layout")),
        many => Err(format!(
            "pod {uid} has {} cgroups ({}): refusing to guess",
            many.len(),
            many.iter()
                .map(|p| p.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7";

    /// The directories a node running kubelet with the systemd driver and containerd
    /// shows under /sys/fs/cgroup (one pod of each QoS class, with containers), as the
    /// kubelet and systemd name them.
    const SYSTEMD_NODE: &[&str] = &[
        "/kubepods.slice",
        "/kubepods.slice/kubepods-burstable.slice",
        "/kubepods.slice/kubepods-besteffort.slice",
        "/kubepods.slice/kubepods-pod0d6f1b2a_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice",
        "/kubepods.slice/kubepods-pod0d6f1b2a_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-4b1c0f7e9d2a8b3c6e5f4a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d.scope",
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f3a2c1e_5b7d_4e9f_a0b1_c2d3e4f5a6b7.slice",
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f3a2c1e_5b7d_4e9f_a0b1_c2d3e4f5a6b7.slice/cri-containerd-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d.scope",
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice",
        "/system.slice",
        "/system.slice/containerd.service",
        "/system.slice/kubelet.service",
    ];

    /// The same with the cgroupfs driver (e.g. kubeadm on a host without systemd).
    const CGROUPFS_NODE: &[&str] = &[
        "/kubepods",
        "/kubepods/burstable",
        "/kubepods/besteffort",
        "/kubepods/pod0d6f1b2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
        "/kubepods/pod0d6f1b2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b/4b1c0f7e9d2a",
        "/kubepods/burstable/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7",
        "/kubepods/burstable/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7/9e8d7c6b5a4f",
        "/kubepods/besteffort/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    ];

    #[test]
    fn expected_paths_follow_each_driver_and_qos_class() {
        let e = |d, root, q| expected(d, root, q, UID).map(|p| p.path);
        assert_eq!(
            e(Driver::Systemd, "/", Qos::Burstable).as_deref(),
            Some(SYSTEMD_NODE[5])
        );
        assert_eq!(
            e(Driver::Systemd, "/", Qos::Guaranteed).as_deref(),
            Some("/kubepods.slice/kubepods-pod8f3a2c1e_5b7d_4e9f_a0b1_c2d3e4f5a6b7.slice")
        );
        assert_eq!(
            e(Driver::Cgroupfs, "/", Qos::Burstable).as_deref(),
            Some(CGROUPFS_NODE[5])
        );
        assert_eq!(
            e(Driver::Cgroupfs, "/", Qos::BestEffort).as_deref(),
            Some("/kubepods/besteffort/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7")
        );
        // A kubelet with --cgroup-root (e.g. kind's nested node cgroups).
        assert_eq!(
            e(Driver::Cgroupfs, "/kubelet/", Qos::Guaranteed).as_deref(),
            Some("/kubelet/kubepods/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7")
        );
        assert_eq!(
            expected(Driver::Systemd, "/", Qos::Burstable, "not-a-uid"),
            None
        );
        assert_eq!(
            expected(Driver::Systemd, "/", Qos::Burstable, &UID.to_uppercase()),
            None
        );
    }

    #[test]
    fn each_layout_classifies_pods_and_nothing_else() {
        for (node, driver) in [
            (SYSTEMD_NODE, Driver::Systemd),
            (CGROUPFS_NODE, Driver::Cgroupfs),
        ] {
            let pods: Vec<PodCgroup> = node.iter().filter_map(|p| classify(p)).collect();
            let got: Vec<(&str, Qos)> = pods.iter().map(|p| (p.uid.as_str(), p.qos)).collect();
            assert_eq!(
                got,
                vec![
                    ("0d6f1b2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b", Qos::Guaranteed),
                    (UID, Qos::Burstable),
                    ("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", Qos::BestEffort),
                ],
                "{driver:?}"
            );
            assert!(pods
                .iter()
                .all(|p| p.driver == driver && node.contains(&p.path.as_str())));
        }
    }

    #[test]
    fn look_alikes_are_not_pods() {
        for path in [
            "/kubepods.slice/kubepods-burstable-pod8f3a2c1e_5b7d_4e9f_a0b1_c2d3e4f5a6b7.slice",
            "/system.slice/kubepods-burstable.slice/kubepods-burstable-pod8f3a2c1e_5b7d_4e9f_a0b1_c2d3e4f5a6b7.slice",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7.slice",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f3a2c1e_5b7d.slice",
            "/kubepods/burstable/pod8f3a2c1e_5b7d_4e9f_a0b1_c2d3e4f5a6b7",
            "/kubepods/guaranteed/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7",
            "/other/burstable/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7",
            "/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7",
            "/kubepods/burstable/pod8f3a2c1e-5b7d-4e9f-a0b1-c2d3e4f5a6b7/9e8d7c6b5a4f",
            "/kubepods.slice",
            "",
        ] {
            assert_eq!(classify(path), None, "{path}");
        }
    }

    #[test]
    fn locate_finds_exactly_one_cgroup_or_refuses() {
        let p = locate(UID, SYSTEMD_NODE.iter().copied()).unwrap();
        assert_eq!(p.path, SYSTEMD_NODE[5]);
        let p = locate(UID, CGROUPFS_NODE.iter().copied()).unwrap();
        assert_eq!((p.driver, p.qos), (Driver::Cgroupfs, Qos::Burstable));
        let e = locate(
            "00000000-0000-4000-8000-000000000000",
            SYSTEMD_NODE.iter().copied(),
        )
        .unwrap_err();
        assert!(e.contains("no cgroup"), "{e}");
        let both: Vec<&str> = SYSTEMD_NODE.iter().chain(CGROUPFS_NODE).copied().collect();
        let e = locate(UID, both).unwrap_err();
        assert!(
            e.contains("2 cgroups") && e.contains("refusing to guess"),
            "{e}"
        );
        assert!(locate("x", SYSTEMD_NODE.iter().copied()).is_err());
    }
}
