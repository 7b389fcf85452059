#!/bin/sh
# Runs after the package is unpacked: make the state directory the service uses.
set -e
mkdir -p /var/lib/hello
echo "hello installed" > /var/lib/hello/installed
exit 0
