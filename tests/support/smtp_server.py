"""A real SMTP server for the mail tests: aiosmtpd, writing a Maildir,
requiring STARTTLS with the given certificate, and AUTH with the given
user and password (read from a file) when those are given.

usage: smtp_server.py HOST PORT MAILDIR CERT KEY [USER PASSWORD_FILE]
"""
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

host, port, maildir, cert, key = sys.argv[1:6]
user = sys.argv[6] if len(sys.argv) > 6 else None
password = open(sys.argv[7]).read().strip() if len(sys.argv) > 7 else None


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok)


tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
options = dict(tls_context=tls, require_starttls=True)
if user is not None:
    options.update(authenticator=authenticate, auth_required=True, auth_require_tls=True)
controller = Controller(Mailbox(maildir), hostname=host, port=int(port), **options)
controller.start()
print("listening", flush=True)
while True:
    time.sleep(3600)
