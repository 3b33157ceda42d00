# Nomad job for warren workload "metrics", from `warren spec export --format nomad`.
# Its data dataset (/data) is not referred to by the spec and is left out.
# Note: the exec driver's chroot (chroot_env) must hold the recipe "infra/node-exporter 1.8".

job "metrics" {
  datacenters = ["*"]
  type = "batch"

  group "metrics" {
    count = 0

    network {
      mode = "host"
      port "http" {
        static = 9100
      }
    }

    restart {
      attempts = 0
      mode = "fail"
    }

    reschedule {
      attempts = 0
      unlimited = false
    }

    service {
      name = "metrics"
      provider = "nomad"
      port = "http"
      tags = ["traefik.enable=true", "traefik.http.routers.metrics.rule=Host(`metrics.home.arpa`)"]

      check {
        type = "tcp"
        port = "http"
        interval = "10s"
        timeout = "5s"
      }
    }

    task "metrics" {
      driver = "exec"
      user = "nobody"

      config {
        command = "/bin/sh"
      }
    }
  }
}
