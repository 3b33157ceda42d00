# Nomad job for warren workload "web", from `warren spec export --format nomad`.
# Note: cpus = 0.5: cpu = 500 MHz, assuming 1000 MHz a core; Nomad's cpu is a share, a hard limit needs the docker driver's cpu_hard_limit.
# Note: host volume "web-data": declare it on the client (client-host-volumes.hcl).
# Note: the exec driver's chroot is built from the client's own system (chroot_env), as world "host" is.
# Note: tls = "local": Traefik serves its default or ACME certificate.
# Cannot map:
#   workload.web.resources.pids: 64 processes: no per-workload process limit (a node-wide setting)

job "web" {
  datacenters = ["*"]
  type = "service"

  group "web" {
    count = 1

    network {
      mode = "bridge"
      port "http" {
        to = 8080
      }
    }

    volume "web-data" {
      type = "host"
      source = "web-data"
    }

    restart {
      attempts = 10
      interval = "30m"
      delay = "1s"
      mode = "delay"
    }

    service {
      name = "web"
      provider = "nomad"
      port = "http"
      tags = ["traefik.enable=true", "traefik.http.routers.web.rule=Host(`web.home.arpa`)", "traefik.http.routers.web.tls=true"]
    }

    task "web" {
      driver = "exec"

      config {
        command = "sh"
        args = ["-c", "echo 'hello from web' > /data/index.html; exec python3 -m http.server 8080 --directory /data"]
      }

      env {
        PYTHONUNBUFFERED = "1"
      }

      resources {
        cpu = 500
        memory = 128
      }

      volume_mount {
        volume = "web-data"
        destination = "/data"
      }
    }
  }
}
