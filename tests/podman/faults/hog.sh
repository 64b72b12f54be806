dd if=/dev/zero of=/dev/null bs=256M count=1
