# Times as the support pages write them, to the second and with their zone: staff compare them
# with what users and other systems say, and must not guess the zone.
DATETIME_FORMAT = "j M Y, H:i:s e"
