from django import template

from frontend.markdown import markdown_render

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str):
    """Markdown as sanitised HTML (frontend.markdown)."""
    return markdown_render(text)
