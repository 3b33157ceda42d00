# Nomad client configuration: the host volumes of the jobs exported by
# `warren spec export --format nomad`. Point each path at the volume's data
# (a copy of the warren volume, or its dataset) on every client that runs them.
# Cannot map:
#   volume.files.site: the volume served on files.home.arpa: no built-in static file server; run one (nginx, caddy) that mounts the volume

client {
  host_volume "api-data" {
    path = "/srv/nomad/volumes/api-data"
    read_only = false
  }

  host_volume "files" {
    path = "/srv/nomad/volumes/files"
    read_only = false
  }

  host_volume "web-data" {
    path = "/srv/nomad/volumes/web-data"
    read_only = false
  }
}
