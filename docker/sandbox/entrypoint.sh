#!/bin/sh
# Stand-in for the NeMo-Skills sandbox image's /entrypoint.sh, which prepares uwsgi and nginx.
# skillflow's service needs no preparation: report what will run and succeed, so that the
# upstream launch line `/entrypoint.sh && /start.sh` goes on to start the service.
echo "skillflow sandbox image: $(skillflow --help >/dev/null 2>&1 && echo 'skillflow CLI ok') (uid $(id -u))"
