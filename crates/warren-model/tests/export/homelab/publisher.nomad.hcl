# Nomad job for warren workload "publisher", from `warren spec export --format nomad`.
# Its data dataset (/data) is not referred to by the spec and is left out.
# Note: host volume "files" (1024 MiB): declare it on the client (client-host-volumes.hcl).
# Note: the exec driver's chroot (chroot_env) must hold the world "busybox".
# Cannot map:
#   workload.publisher.resources.pids: 8 processes: no per-workload process limit (a node-wide setting)

job "publisher" {
  datacenters = ["*"]
  type = "service"

  group "publisher" {
    count = 1

    network {
      mode = "bridge"
    }

    volume "files" {
      type = "host"
      source = "files"
    }

    restart {
      attempts = 10
      interval = "30m"
      delay = "1s"
      mode = "delay"
    }

    task "publisher" {
      driver = "exec"

      config {
        command = "sh"
        args = ["-c", "echo 'built at' $(date) > /out/build.txt; exec sleep 1000000"]
      }

      resources {
        memory = 16
      }

      volume_mount {
        volume = "files"
        destination = "/out"
      }
    }
  }
}
