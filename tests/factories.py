import factory

from accounts.models import User

PASSWORD = "a-long-password-123"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    plan = User.Plan.FREE

    @classmethod
    def _create(cls, model_class: type[User], *args: object, **kwargs: object) -> User:
        kwargs.setdefault("password", PASSWORD)
        return model_class.objects.create_user(*args, **kwargs)  # type: ignore[arg-type]
