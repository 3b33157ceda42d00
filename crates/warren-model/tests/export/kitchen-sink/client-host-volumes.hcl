# Nomad client configuration: the host volumes of the jobs exported by
# `warren spec export --format nomad`. Point each path at the volume's data
# (a copy of the warren volume, or its dataset) on every client that runs them.
# Skipped: workload bsd skipped: a FreeBSD jail: neither Nomad's nor Kubernetes' stock drivers run jails.
# Skipped: workload vm1 skipped: a VM: plain Nomad and Kubernetes schedule containers and processes; run it with Nomad's qemu driver or KubeVirt by hand.
# Cannot map:
#   volume.repos.snapshots: automatic snapshots: use the storage's own snapshot schedule

client {
  host_volume "db-data" {
    path = "/srv/nomad/volumes/db-data"
    read_only = false
  }

  host_volume "repos" {
    path = "/srv/nomad/volumes/repos"
    read_only = false
  }

  host_volume "shared" {
    path = "/srv/nomad/volumes/shared"
    read_only = false
  }
}
