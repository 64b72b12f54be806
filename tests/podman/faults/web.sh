mkdir -p /tmp/www && echo "served by $OSCAR_SERVICE_NAME" > /tmp/www/index.html
echo "$WEB_TOKEN" > /tmp/www/token.txt
exec busybox httpd -f -p 8080 -h /tmp/www
