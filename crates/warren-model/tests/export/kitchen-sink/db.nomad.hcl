# Nomad job for warren workload "db", from `warren spec export --format nomad`.
# Note: cpus = 2: cpu = 2000 MHz, assuming 1000 MHz a core; Nomad's cpu is a share, a hard limit needs the docker driver's cpu_hard_limit.
# Note: host volume "db-data": declare it on the client (client-host-volumes.hcl).
# Cannot map:
#   workload.db.health: an exec check: Nomad's built-in service provider runs http and tcp checks only (with Consul, a script check)
#   workload.db.hooks: 1 event hook(s): no equivalent
#   workload.db.ports: 127.0.0.1:5432: Nomad picks a port's address by host_network name; declare a host_network for 127.0.0.1 in the client configuration and set host_network on port p5432
#   workload.db.resources.disk: 10737418240 bytes of writes: Nomad limits only the allocation directory
#   workload.db.resources.pids: 100 processes: no per-workload process limit (a node-wide setting)
#   workload.db.snapshots: automatic snapshots: use the storage's own snapshot schedule
#   workload.db.userns: a user namespace per workload: Nomad's drivers configure user namespaces per client (docker's userns-remap), not per task

job "db" {
  datacenters = ["*"]
  type = "batch"

  group "db" {
    count = 1

    network {
      mode = "bridge"
      port "p5432" {
        static = 5432
        to = 5432
      }
      port "p5353" {
        static = 5353
        to = 53
      }
    }

    volume "db-data" {
      type = "host"
      source = "db-data"
    }

    restart {
      attempts = 10
      interval = "30m"
      delay = "1s"
      mode = "delay"
    }

    service {
      name = "db"
      provider = "nomad"
      port = "p5432"
    }

    task "db" {
      driver = "docker"
      user = "999:999"

      config {
        image = "docker.io/library/postgres:16"
        entrypoint = ["docker-entrypoint.sh"]
        command = "postgres"
        args = ["-c", "max_connections=50"]
        work_dir = "/var/lib/postgresql"
        readonly_rootfs = true
      }

      env = {
        "POSTGRES_PASSWORD" = "s3cret"
        "TEMPLATE" = "$${HOME} %%{x}"
        "dotted.name" = "ok"
      }

      resources {
        cpu = 2000
        memory = 1024
      }

      volume_mount {
        volume = "db-data"
        destination = "/var/lib/postgresql/data"
      }
    }
  }
}
