#!/usr/bin/env bash
# System tools the suite drives for real: curl (uploads through the proxy), kubectl (kustomize rendering) and
# age (decrypts sealed incident evidence the way a responder would).
# Installed from Debian's packages when missing; quiet when everything is present.
set -u
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
command -v age >/dev/null 2>&1 || need+=(age)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}; the tests that need them will say so" >&2
fi
exit 0
