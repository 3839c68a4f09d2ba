"""People in a real browser (issue 14, item 3): a researcher creates an invitation on the members
page, and a colleague in a second browser context opens the link, makes an account and lands on
the home page as a member; at desktop and at phone width."""
import pytest

from annotation.models import Membership
from tests.browser.conftest import polling_without_eval, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "a long enough passphrase"
VIEWPORTS = {"desktop": {"viewport": {"width": 1280, "height": 900}},
             "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}}


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_an_invitation_created_on_the_members_page_is_accepted_in_a_second_browser(chromium, live_server, project,
                                                                                  width):
    researcher_context = chromium.new_context(**VIEWPORTS[width])
    page = polling_without_eval(researcher_context.new_page())
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "rita", "/projects/cats/members/")
    if width == "phone":  # wide tables scroll inside their own box; the page itself does not
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_test_id("invite-role").select_option("annotator")
    page.get_by_test_id("invite-uses").fill("2")
    page.get_by_test_id("invite-create").click()
    page.get_by_test_id("message-success").wait_for()
    link = page.get_by_test_id("invitation-link").first.input_value()
    assert link.startswith(live_server.url + "/invite/")

    guest_context = chromium.new_context(**VIEWPORTS[width])
    try:
        guest = polling_without_eval(guest_context.new_page())
        guest.set_default_timeout(15_000)
        guest.goto(link)
        assert "Cats" in guest.get_by_test_id("invitation-role").inner_text()
        assert "annotator" in guest.get_by_test_id("invitation-role").inner_text()
        if width == "phone":  # the form fits the screen: nothing to scroll sideways
            assert guest.evaluate("document.documentElement.scrollWidth") <= 390
        guest.get_by_test_id("signup-username").fill("colleague")
        guest.get_by_test_id("signup-password").fill(NEW_PASSWORD)
        guest.get_by_test_id("signup-password2").fill(NEW_PASSWORD)
        guest.get_by_test_id("signup-submit").click()
        guest.wait_for_url(f"{live_server.url}/")
        assert guest.get_by_test_id("username").inner_text() == "colleague"
        assert "Cats" in guest.locator("main").inner_text()
    finally:
        guest_context.close()

    assert Membership.objects.get(project=project, user__username="colleague").role == "annotator"
    page.reload()
    assert page.get_by_test_id("invitation-link").count() == 1
    assert "1 / 2" in page.locator("[data-testid=invitations-table] tbody tr").first.inner_text()
    assert page.get_by_test_id("member-colleague").count() == 1
    researcher_context.close()
