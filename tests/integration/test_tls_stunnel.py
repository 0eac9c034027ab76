"""What is stunnel's own (the policy every front shares is in
test_tls_fronts.py): the generated configuration carries the policy's
settings, the ticket secrets and PROXY protocol, and is private.
"""
import os
import re
import stat

import tls_util


def test_stunnel_conf_carries_the_policy(stack):
    front = tls_util.start_front(stack)
    conf = open(front.conf).read()
    assert re.search(r"^protocol = proxy$", conf, re.M)
    assert re.search(r"^sslVersionMin = TLSv1.2$", conf, re.M)
    assert re.search(r"^curves = X25519:P-256$", conf, re.M)
    keys = open(os.path.join(front.run_dir, "ticket.keys")).read().split()
    assert re.search(rf"^ticketKeySecret = {keys[0]}$", conf, re.M)
    assert re.search(rf"^ticketMacSecret = {keys[1]}$", conf, re.M)
    assert stat.S_IMODE(os.stat(os.path.join(front.run_dir, "ticket.keys")).st_mode) == 0o600
