"""Suite-wide settings."""

from hypothesis import settings

# No per-example deadline: the suite runs on loaded 2-core machines (CI, eight jobs at once), where
# a slow example says nothing about the property. Example counts stay as each test sets them.
settings.register_profile("detector", deadline=None)
settings.load_profile("detector")
