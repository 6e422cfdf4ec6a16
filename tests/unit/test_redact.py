"""Redaction of URLs and messages: every form of password, and refusal of URLs that cannot be
masked safely."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.engine import make_url

from agent.log import RedactingFormatter
from agent.redact import UnsafeURL, check_url, redact_text, redact_url, secrets_of

PW = "Pa55-w0rd"

# (url, shown): URLs that are accepted, and how they are shown.
SAFE = [
    (f"postgresql+psycopg://nova:{PW}@db.example:5432/nova",
     "postgresql+psycopg://nova:***@db.example:5432/nova"),
    (f"postgresql+psycopg://nova@db.example/nova?password={PW}",
     "postgresql+psycopg://nova@db.example/nova?password=***"),
    (f"postgresql+psycopg://nova@db.example/nova?sslmode=require&password={PW}",
     "postgresql+psycopg://nova@db.example/nova?sslmode=require&password=***"),
    (f"postgresql+psycopg://nova@db.example/nova?PassWord={PW}",
     "postgresql+psycopg://nova@db.example/nova?PassWord=***"),
    (f"postgresql+psycopg://nova@db.example/nova?pass%77ord={PW}",
     "postgresql+psycopg://nova@db.example/nova?pass%77ord=***"),
    (f"postgresql+psycopg://nova@db/nova?sslpassword={PW}&sslkey=/k.pem",
     "postgresql+psycopg://nova@db/nova?sslpassword=***&sslkey=***"),
    (f"postgresql+psycopg:///nova?host=/run/postgresql&user=nova&password={PW}",
     "postgresql+psycopg:///nova?host=/run/postgresql&user=nova&password=***"),
    (f"postgresql+psycopg://nova@db/nova?password={PW}#frag;x",
     "postgresql+psycopg://nova@db/nova?password=***"),
    (f"mysql+pymysql://root:{PW}@127.0.0.1/agent", "mysql+pymysql://root:***@127.0.0.1/agent"),
    (f"mysql+pymysql://root@127.0.0.1/agent?passwd={PW}",
     "mysql+pymysql://root@127.0.0.1/agent?passwd=***"),
    ("mysql+pymysql://root:p%40ss%2Fw%3Fd%23@h/agent", "mysql+pymysql://root:***@h/agent"),
    ("postgresql://nova:pa:ss@h/db", "postgresql://nova:***@h/db"),
    (f"postgresql://nova:{PW}@[::1]:5432/db", "postgresql://nova:***@[::1]:5432/db"),
    (f"rabbit://nova:{PW}@mq1:5672,nova:{PW}x@mq2:5672/vhost",
     "rabbit://nova:***@mq1:5672,nova:***@mq2:5672/vhost"),
    (f"amqp://guest:{PW}@localhost/", "amqp://guest:***@localhost/"),
    (f"https://user:{PW}@example.org/path?token={PW}&page=2",
     "https://user:***@example.org/path?token=***&page=2"),
    ("postgresql://nova@db.example/nova", "postgresql://nova@db.example/nova"),
    ("sqlite:////var/lib/compute-agent/agent.sqlite",
     "sqlite:////var/lib/compute-agent/agent.sqlite"),
    ("sqlite://", "sqlite://"),
    ("sqlite:////home/op/My State@2/agent.sqlite", "sqlite:////home/op/My State@2/agent.sqlite"),
]

# URLs whose password could not be told apart from host, path or query.
UNSAFE = [
    f"postgresql+psycopg://nova:{PW}@x@db.example/nova",      # unencoded '@' in the password
    f"postgresql+psycopg://nova:{PW}/x@db.example/nova",      # '/' in the password
    f"postgresql+psycopg://nova:{PW}?x@db.example/nova",      # '?' in the password
    f"postgresql+psycopg://nova:{PW}#x@db.example/nova",      # '#' in the password
    f"postgresql+psycopg://nova:{PW} x@db.example/nova",      # a blank
    f"postgresql+psycopg://nova:'{PW}'@db.example/nova",      # quotes
    f"postgresql+psycopg://nova:1,{PW}@db.example/nova",      # ',' read as a second host
    f"postgresql+psycopg://db.example/nova?password={PW}@x",  # '@' in the query
    f"postgresql+psycopg://nova:{PW}",                        # password read as a port
    f"postgresql+psycopg:/nova:{PW}@db.example/nova",         # not SCHEME://
    f"nova:{PW}@db.example/nova",                             # no scheme
    f"postgresql+psycopg:///nova?password={PW} x",            # a blank in the query
    f"postgresql+psycopg://nova:{PW}\n@db.example/nova",      # a control character
]


@pytest.mark.parametrize("url, shown", SAFE, ids=[s for s, _ in SAFE])
def test_safe_url_is_shown_without_any_password(url, shown):
    check_url(url)
    assert redact_url(url) == shown
    assert PW not in redact_text(f"connecting to {url} failed", secrets_of(url))


@pytest.mark.parametrize("url", UNSAFE)
def test_unsafe_url_is_refused_and_shown_as_its_scheme_only(url):
    with pytest.raises(UnsafeURL) as caught:
        check_url(url)
    assert PW not in str(caught.value) and "db.example" not in str(caught.value)
    shown = redact_url(url)
    assert PW not in shown and "x@" not in shown
    assert shown in ("postgresql+psycopg://***", "postgresql+psycopg:***", "nova:***")


@pytest.mark.parametrize("url", [u for u, _ in SAFE if u.startswith(("postgresql", "mysql"))])
def test_secrets_are_the_passwords_sqlalchemy_reads(url):
    parsed = make_url(url)
    expected = {parsed.password} | {v for k, v in parsed.query.items()
                                    if "pass" in k.lower() or "key" in k.lower()}
    assert expected - {None} <= set(secrets_of(url))


@pytest.mark.parametrize("text, shown", [
    (f"FATAL: password={PW} host=db", "FATAL: password=*** host=db"),
    (f"{{'user': 'nova', 'password': '{PW}'}}", "{'user': 'nova', 'password': '***'}"),
    (f'"sslpassword": "{PW}"', '"sslpassword": "***"'),
    (f"conninfo 'dbname=nova passwd={PW}'", "conninfo 'dbname=nova passwd=***'"),
    (f"see postgresql://keystone:{PW}@db/nova?x=1 now",
     "see postgresql://keystone:***@db/nova?x=1 now"),
    ("(Background on this error at: https://sqlalche.me/e/20/e3q8)",
     "(Background on this error at: https://sqlalche.me/e/20/e3q8)"),
    ("duplicate key value violates unique constraint", "duplicate key value violates unique "
     "constraint"),
    (f"PASSWORD={PW} Auth_Token: {PW}", "PASSWORD=*** Auth_Token: ***"),
    # Case variants that re.IGNORECASE folds: the quick test for a secret word must see them.
    (f"pa\u017f\u017fword={PW}", "pa\u017f\u017fword=***"),
    ("instance 7f3e: stop done: vm_state stopped, power_state SHUTDOWN",
     "instance 7f3e: stop done: vm_state stopped, power_state SHUTDOWN"),
], ids=["libpq-pair", "dict-repr", "json", "conninfo", "url-in-text", "plain-url", "plain",
        "upper-case", "case-folded", "operation-line"])
def test_text_is_shown_without_any_password(text, shown):
    assert redact_text(text) == shown


def test_known_secret_is_removed_wherever_a_library_quoted_it():
    assert redact_text(f"could not resolve host {PW}.example", (PW,)) == \
        "could not resolve host ***.example"
    # Too short to remove everywhere without garbling the line; URL and key=value forms still
    # hide it.
    assert redact_text("abc password=ab", ("ab",)) == "abc password=***"


def test_known_secret_is_removed_as_a_whole_word_only():
    # a password that is also a word the agent's own lines use
    secrets = secrets_of("rabbit://nova:guest@broker:5672/")
    assert redact_text("init_host: 3 instances, 2 guests on the hypervisor; guest g1 "
                       "(guest_id 7) AMQP login refused for 'guest'", secrets) == \
        "init_host: 3 instances, 2 guests on the hypervisor; *** g1 (guest_id 7) AMQP login " \
        "refused for '***'"
    # an edge that is not a word character needs no boundary: still removed everywhere
    assert redact_text("x p@ss!y", ("p@ss!",)) == "x ***y"


def test_password_equal_to_its_user_name_is_masked_in_urls_only():
    """RabbitMQ's guest:guest: the user name shows the word anyway, so free text keeps it
    ('2 guests on the hypervisor' is not garbled) while the URL's password is still masked."""
    url = "rabbit://guest:guest@broker:5672/"
    assert secrets_of(url) == ()
    assert redact_url(url) == "rabbit://guest:***@broker:5672/"
    assert redact_text("1 guest on the hypervisor", secrets_of(url)) == \
        "1 guest on the hypervisor"


def test_log_formatter_removes_passwords_from_message_and_traceback():
    url = f"postgresql+psycopg://nova@db/nova?password={PW}"
    try:
        raise RuntimeError(f"cannot connect to {url}")
    except RuntimeError:
        record = logging.LogRecord("agent.x", logging.ERROR, __file__, 1, "database %s", (url,),
                                   exc_info=True)
        import sys
        record.exc_info = sys.exc_info()
    record.request_id = "req-1"
    line = RedactingFormatter((PW,)).format(record)
    assert PW not in line
    assert line.count("?password=***") == 2
