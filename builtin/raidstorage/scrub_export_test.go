package raidstorage

// Pacer exposes the scrub's throttle to the tests.
var Pacer = pacer
