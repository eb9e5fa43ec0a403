import re

from django.core.exceptions import ValidationError

DOMAIN = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")
# Directives that could read other customers' files or load code into nginx.
FORBIDDEN = re.compile(
    r"\b(include|load_module|perl\w*|lua\w*|js_\w+|ssl_certificate\w*|"
    r"alias|root|access_log|error_log)\b"
)


def validate_domain(value: str) -> None:
    if not DOMAIN.match(value):
        raise ValidationError(f"{value!r} is not a valid lowercase domain name.")


def validate_domain_list(value: str) -> None:
    for item in value.split():
        validate_domain(item)


def validate_nginx_directives(value: str) -> None:
    """Custom directives go inside the site's server block; nginx -t judges the rest."""
    if value.count("{") != value.count("}"):
        raise ValidationError("Braces are not balanced.")
    match = FORBIDDEN.search(value)
    if match:
        raise ValidationError(f"The {match.group(1)!r} directive is not allowed here.")
