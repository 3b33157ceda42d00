# Nomad job for warren workload "api", from `warren spec export --format nomad`.
# Note: host volume "api-data": declare it on the client (client-host-volumes.hcl).
# Note: the exec driver's chroot is built from the client's own system (chroot_env), as world "host" is.
# Cannot map:
#   workload.api.ports: 127.0.0.1:9000: Nomad picks a port's address by host_network name; declare a host_network for 127.0.0.1 in the client configuration and set host_network on port p9000
#   workload.api.resources.pids: 32 processes: no per-workload process limit (a node-wide setting)

job "api" {
  datacenters = ["*"]
  type = "service"

  group "api" {
    count = 1

    network {
      mode = "bridge"
      port "p9000" {
        static = 9000
        to = 9000
      }
    }

    volume "api-data" {
      type = "host"
      source = "api-data"
    }

    restart {
      attempts = 10
      interval = "30m"
      delay = "1s"
      mode = "delay"
    }

    service {
      name = "api"
      provider = "nomad"
      port = "p9000"
    }

    task "api" {
      driver = "exec"

      config {
        command = "sh"
        args = ["-c", "mkdir -p /data/v1; echo '{\"ok\":true}' > /data/v1/status; exec python3 -m http.server 9000 --directory /data"]
      }

      resources {
        memory = 64
      }

      volume_mount {
        volume = "api-data"
        destination = "/data"
      }
    }
  }
}
