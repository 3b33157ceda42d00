# Nomad job for warren workload "batch", from `warren spec export --format nomad`.
# Its data dataset (/data) is not referred to by the spec and is left out.
# Note: the exec driver's chroot (chroot_env) must hold the world "busybox".

job "batch" {
  datacenters = ["*"]
  type = "service"

  group "batch" {
    count = 1

    network {
      mode = "none"
    }

    restart {
      attempts = 10
      interval = "30m"
      delay = "1s"
      mode = "delay"
    }

    task "batch" {
      driver = "exec"

      config {
        command = "/bin/sh"
      }
    }
  }
}
