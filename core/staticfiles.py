"""Static files storage: fingerprinted names and gzip copies made by collectstatic."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class PanelStaticStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's compressed manifest storage, except that a file collectstatic has not
    seen yet (tests, tooling, a checkout before its first `make run`) keeps its plain name
    and is served from the finders, instead of failing the page."""

    def stored_name(self, name):
        try:
            return super().stored_name(name)
        except ValueError:
            return name
