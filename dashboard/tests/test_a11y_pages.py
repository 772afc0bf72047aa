"""The layout's accessibility basics, as served (no browser): the skip link first, <main id="main">,
the page's language, the backoffice with the site's favicon. test_a11y_browser.py checks them in use."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("path", ["/", "/requests/", "/accounts/profile/"])
def test_the_skip_link_is_the_first_focusable_element_and_targets_main(astronomer_client, site, path):
    html = astronomer_client.get(path).content.decode()
    body = html[html.index("<body"):]
    first = re.search(r"<(a|button|input|select|textarea)\b[^>]*>", body[body.index(">") + 1:])
    assert first.group(0) == '<a class="skip-link visually-hidden-focusable" href="#main">'
    assert re.search(r'<main\b[^>]*\bid="main"[^>]*\btabindex="-1"', html)
    assert html.count('id="main"') == 1
    assert '<html lang="en"' in html


def test_anonymous_pages_have_the_skip_link_too(client, db):
    html = client.get("/accounts/login/").content.decode()
    assert 'href="#main">Skip to main content</a>' in html and 'id="main"' in html


def test_the_backoffice_has_the_sites_favicon(client, db):
    from pyrosapp.tests.factories import UserFactory

    admin = UserFactory(email="root@example.org", is_staff=True, is_superuser=True)
    client.force_login(admin)
    for path in ("/admin/", "/admin/pyrosapp/request/", "/admin/pyrosapp/request/add/"):
        html = client.get(path).content.decode()
        assert re.search(r'<link rel="icon" href="/static/pyros/favicon\.svg', html), path
        assert "PyROS" in html
