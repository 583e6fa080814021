//! Kubernetes: which cgroup is which pod's. (The DaemonSet and Helm chart are in
//! `deploy/`; docs/kubernetes.md says how they fit together.)
//!
//! - [`pod_cgroup`]: the kubelet's pod cgroup layouts (systemd and cgroupfs drivers), both
//!   ways: a pod's expected cgroup, and the pod a cgroup path belongs to.

pub mod pod_cgroup;
