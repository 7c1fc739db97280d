--TEST--
ebats loads with its classes, its functions and a version (run by `make test` of a phpize build)
--EXTENSIONS--
ebats
--FILE--
<?php
var_dump(extension_loaded('ebats'));
var_dump((bool) preg_match('/^\d+\.\d+\.\d+/', phpversion('ebats')));
foreach (['Asynclib\Ebats\Event', 'Asynclib\Ebats\Worker', 'Asynclib\Ebats\Scheduler', 'Asynclib\Ebats\FailedStore'] as $class) {
    var_dump(class_exists($class));
}
var_dump(function_exists('ebats_config'), ebats_config()['version'] === phpversion('ebats'));
?>
--EXPECT--
bool(true)
bool(true)
bool(true)
bool(true)
bool(true)
bool(true)
bool(true)
bool(true)
