#!/bin/busybox sh
# Runs inside the image, where busybox is the only program.
/bin/busybox cat /app/message.txt
echo "running as uid $(/bin/busybox id -u) in $(/bin/busybox pwd), GREETING=$GREETING"
