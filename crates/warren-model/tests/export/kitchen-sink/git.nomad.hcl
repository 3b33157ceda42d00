# Nomad job for warren workload "git", from `warren spec export --format nomad`.
# Its data dataset (/data) is not referred to by the spec and is left out.
# Note: host volume "repos" (20480 MiB): declare it on the client (client-host-volumes.hcl).
# Note: host volume "shared": declare it on the client (client-host-volumes.hcl).
# Note: tls files: load the certificate and key into Traefik's TLS store.
# Cannot map:
#   workload.git.max_body: a request body limit: add a Traefik buffering middleware

job "git" {
  datacenters = ["*"]
  type = "service"

  group "git" {
    count = 1

    network {
      mode = "bridge"
      hostname = "git"
      port "http" {
        to = 3000
      }
    }

    volume "repos" {
      type = "host"
      source = "repos"
    }

    volume "shared" {
      type = "host"
      source = "shared"
      read_only = true
    }

    restart {
      attempts = 10
      interval = "30m"
      delay = "1s"
      mode = "delay"
    }

    service {
      name = "git"
      provider = "nomad"
      port = "http"
      tags = ["traefik.enable=true", "traefik.http.routers.git.rule=(Host(`git.home.arpa`) || HostRegexp(`^[^.]+\\.apps\\.home\\.arpa$`)) && PathPrefix(`/git`)", "traefik.http.routers.git.tls=true"]

      check {
        type = "http"
        path = "/healthz"
        port = "http"
        interval = "15s"
        timeout = "3s"

        check_restart {
          limit = 5
          grace = "60s"
        }
      }
    }

    task "git" {
      driver = "docker"

      config {
        image = "docker.io/gitea/gitea:1"
      }

      volume_mount {
        volume = "repos"
        destination = "/srv/git"
      }

      volume_mount {
        volume = "shared"
        destination = "/srv/shared"
        read_only = true
      }
    }
  }
}
