# Nomad job for warren workload "clock", from `warren spec export --format nomad`.
# Its data dataset (/data) is not referred to by the spec and is left out.
# Note: the exec driver's chroot (chroot_env) must hold the world "busybox".
# Cannot map:
#   workload.clock.resources.pids: 8 processes: no per-workload process limit (a node-wide setting)

job "clock" {
  datacenters = ["*"]
  type = "batch"

  group "clock" {
    count = 1

    network {
      mode = "bridge"
    }

    restart {
      attempts = 10
      interval = "30m"
      delay = "1s"
      mode = "delay"
    }

    task "clock" {
      driver = "exec"

      config {
        command = "sh"
        args = ["-c", "while true; do date; sleep 10; done"]
      }

      resources {
        memory = 16
      }
    }
  }
}
