import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
# What loading the app made lives as long as the process: keep it out of every full collection.
# Under bench/toggle, a worker's full collection took 105-170 ms before this, and 6-27 ms after.
gc.freeze()
