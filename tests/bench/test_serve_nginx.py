"""The generated nginx.conf: one worker, proxy_cache in the temp dir, hits made visible."""

from __future__ import annotations

import re
from pathlib import Path

from bench import nginx


def conf(tmp_path: Path, **kw) -> nginx.NginxConf:
    return nginx.NginxConf(listen="127.0.0.1:18080", origin="http://127.0.0.1:19090/",
                           prefix=tmp_path, **kw)


def test_render_has_the_fair_comparison_settings(tmp_path: Path) -> None:
    text = nginx.render(conf(tmp_path))
    for directive in ("daemon off;", "master_process on;", "worker_processes 1;",
                      "access_log off;", "sendfile on;", "proxy_cache bench;",
                      "proxy_cache_valid 200 1d;", "listen 127.0.0.1:18080 reuseport;",
                      "add_header X-Cache-Status $upstream_cache_status always;",
                      "server 127.0.0.1:19090;"):
        assert directive in text, directive
    assert f"proxy_cache_path {tmp_path}/cache " in text
    assert f"pid {tmp_path}/nginx.pid;" in text and f"error_log {tmp_path}/error.log" in text
    # every temp path nginx would otherwise put under /var/lib/nginx is in our prefix
    for directive, d in (("client_body_temp", "client_body"), ("proxy_temp", "proxy_temp"),
                         ("fastcgi_temp", "fastcgi_temp"), ("uwsgi_temp", "uwsgi_temp"),
                         ("scgi_temp", "scgi_temp")):
        assert re.search(rf"\b{directive}_path {re.escape(str(tmp_path))}/{d};", text), d
    assert "user " not in text
    assert text.count("{") == text.count("}")


def test_render_user_and_workers(tmp_path: Path) -> None:
    text = nginx.render(conf(tmp_path, user="root", workers=2))
    assert text.startswith("# generated") and "\nuser root;\n" in text
    assert "worker_processes 2;" in text


def test_write_creates_conf_and_dirs_and_command_points_at_them(tmp_path: Path) -> None:
    c = conf(tmp_path)
    path = nginx.write(c)
    assert path.read_text() == nginx.render(c)
    assert (tmp_path / "cache").is_dir() and (tmp_path / "proxy_temp").is_dir()
    cmd = nginx.command("/usr/sbin/nginx", c)
    assert cmd[0] == "/usr/sbin/nginx"
    assert cmd[cmd.index("-c") + 1] == str(path) and cmd[cmd.index("-p") + 1] == str(tmp_path)


def test_find_nginx_uses_the_given_search_path(tmp_path: Path) -> None:
    assert nginx.find_nginx(str(tmp_path)) is None
    exe = tmp_path / "nginx"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert nginx.find_nginx(str(tmp_path)) == str(exe)
