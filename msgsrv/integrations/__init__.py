"""Files for the machines msgsrv runs on (issue 7), shipped as package data, not imported:

    ocf/msgsrv              Pacemaker (OCF) resource agent: start-msg ha / stop-msg / monitor
    systemd/msgsrv.service  systemd unit: start-msg / stop-msg
    prometheus/msgsrv-alerts.yml      Prometheus alerting rules for the watcher's metrics (issue 15)
    grafana/msgsrv-dashboard.json     Grafana dashboard for the same metrics (issue 15)

Find them with `python -c 'import msgsrv.integrations as i; print(i.__path__[0])'`.
"""
