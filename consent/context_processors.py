from django.conf import settings
from django.http import HttpRequest


def product(request: HttpRequest) -> dict[str, str]:
    """Give templates the name under which the setting is shown to users."""
    return {"product_name": settings.CONSENT_PRODUCT_NAME}
