"""Schemathesis hooks for keygate's documents (loaded through SCHEMATHESIS_HOOKS by
scripts/schemathesis/run).

`format: origin` (an allowlist entry) is a rule no regular expression states: a wildcard
directly under a public suffix (`https://*.co.uk`) is refused. Its generator makes entries of
every accepted shape: http or https, any letter case, DNS names, IPv4 and [IPv6] addresses,
ports, and wildcards under a registrable domain.
"""

import schemathesis
from hypothesis import strategies as st

label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
# The last label of a name is never all digits.
top = st.from_regex(r"\A[a-z]{2,10}\Z")
name = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(label, min_size=1, max_size=3), top)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda address: f"[{address}]")
port = st.one_of(st.just(""), st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}"))
scheme = st.sampled_from(["http", "https", "HTTPS", "Http"])

exact = st.builds(lambda s, h, p: f"{s}://{h}{p}", scheme, st.one_of(name, ipv4, ipv6), port)
# Under example.com, example.org, …: a registrable domain, never a public suffix itself.
wildcard = st.builds(
    lambda s, sub, base, p: f"{s}://*.{sub}{base}{p}",
    scheme,
    st.one_of(st.just(""), label.map(lambda l: f"{l}.")),
    st.sampled_from(["example.com", "example.org", "example.co.uk", "shop.example.net"]),
    port,
)

schemathesis.openapi.format("origin", st.one_of(exact, wildcard))
