"""Project instructions: Markdown, rendered to HTML that is safe to put in a page.

markdown-it-py renders CommonMark with raw HTML switched off (it is escaped, not passed
through); nh3 then keeps only the tags below, so a researcher's instructions can format text
and link out, never run script or restyle the page."""
import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_RENDERER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p", "pre",
    "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}, "ol": {"start"}}


def markdown_render(text: str) -> SafeString:
    """`text` (Markdown) as sanitised HTML; images are left out (their address could track who reads)."""
    html = _RENDERER.render(text or "")
    return mark_safe(nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                               url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow"))
