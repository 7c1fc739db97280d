<?php
/*
 * Dumps the reflection of classes and functions as JSON, for StubsTest.
 *
 *   php -n reflect.php stub <stub file>          (without the extension: require the stub, dump what it declares)
 *   php -d extension=... reflect.php ext <names.json>  (with the extension: dump what it registers, plus the named classes)
 */

declare(strict_types=1);

function describe_params(ReflectionFunctionAbstract $f): array
{
    $params = [];
    foreach ($f->getParameters() as $p) {
        $params[] = [
            'name' => $p->getName(),
            'optional' => $p->isOptional(),
            'variadic' => $p->isVariadic(),
            'by_ref' => $p->isPassedByReference(),
        ];
    }
    return $params;
}

function describe_class(string $name): array
{
    $rc = new ReflectionClass($name);
    $constants = [];
    foreach ($rc->getReflectionConstants() as $c) {
        if ($c->isPublic()) {
            $constants[$c->getName()] = $c->getValue();
        }
    }
    ksort($constants);
    $methods = [];
    foreach ($rc->getMethods(ReflectionMethod::IS_PUBLIC) as $m) {
        $methods[strtolower($m->getName())] = [
            'name' => $m->getName(),
            'static' => $m->isStatic(),
            'params' => describe_params($m),
        ];
    }
    ksort($methods);
    $interfaces = $rc->getInterfaceNames();
    sort($interfaces);
    return [
        'name' => $rc->getName(),
        'kind' => $rc->isInterface() ? 'interface' : ($rc->isTrait() ? 'trait' : 'class'),
        'parent' => $rc->getParentClass() ? $rc->getParentClass()->getName() : null,
        'interfaces' => $interfaces,
        'constants' => $constants,
        'methods' => $methods,
    ];
}

function describe_function(string $name): array
{
    $f = new ReflectionFunction($name);
    return ['name' => $f->getName(), 'params' => describe_params($f)];
}

[$mode, $file] = array_pad(array_slice($argv, 1), 2, null);
$classes = [];
$functions = [];
if ($mode === 'stub') {
    if (extension_loaded('ebats')) {
        fwrite(STDERR, "the extension must not be loaded in stub mode\n");
        exit(2);
    }
    $beforeClasses = array_merge(get_declared_classes(), get_declared_interfaces(), get_declared_traits());
    $beforeFunctions = get_defined_functions()['user'];
    require $file;
    $classes = array_values(array_diff(array_merge(get_declared_classes(), get_declared_interfaces(), get_declared_traits()), $beforeClasses));
    $functions = array_values(array_diff(get_defined_functions()['user'], $beforeFunctions));
} elseif ($mode === 'ext') {
    if (!extension_loaded('ebats')) {
        fwrite(STDERR, "the extension is not loaded\n");
        exit(2);
    }
    $ext = new ReflectionExtension('ebats');
    $wanted = json_decode((string) file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
    $classes = array_values(array_unique(array_merge(
        $ext->getClassNames(),
        array_filter($wanted['classes'], static fn (string $c): bool => class_exists($c, false) || interface_exists($c, false))
    )));
    $functions = array_values(array_unique(array_merge(
        array_keys($ext->getFunctions()),
        array_filter($wanted['functions'], static fn (string $f): bool => function_exists($f))
    )));
} else {
    fwrite(STDERR, "usage: reflect.php stub <file> | ext <names.json>\n");
    exit(2);
}

$out = ['classes' => [], 'functions' => []];
foreach ($classes as $c) {
    $d = describe_class($c);
    $out['classes'][$d['name']] = $d;
}
foreach ($functions as $f) {
    $d = describe_function($f);
    $out['functions'][$d['name']] = $d;
}
ksort($out['classes']);
ksort($out['functions']);
echo json_encode($out, JSON_THROW_ON_ERROR), "\n";
