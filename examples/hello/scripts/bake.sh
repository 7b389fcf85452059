#!/bin/sh
# Static machine configuration, run once at bake time inside the image root.
set -e
mkdir -p /etc/hello
echo "baked=true" > /etc/hello/baked.conf
