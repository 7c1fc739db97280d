<?php
/**
 * Broker settings in the style of the original library: the constants AMQ_HOST, AMQ_PORT, AMQ_USER,
 * AMQ_PASS and AMQ_VHOST. ebats reads them when they are defined, and they override the ebats.* php.ini
 * settings and EBATS_* environment variables part by part. Leave this file out to configure ebats through
 * php.ini or the environment alone.
 */

if (!defined('AMQ_HOST')) {
    define('AMQ_HOST', '127.0.0.1');
}
if (!defined('AMQ_PORT')) {
    define('AMQ_PORT', 5672);
}
if (!defined('AMQ_USER')) {
    define('AMQ_USER', 'guest');
}
if (!defined('AMQ_PASS')) {
    define('AMQ_PASS', 'guest');
}
if (!defined('AMQ_VHOST')) {
    define('AMQ_VHOST', '/');
}
