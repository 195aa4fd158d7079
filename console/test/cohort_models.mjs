// Builder models of the common cases, shared by cohort.test.mjs and by the
// Go test that hands each built query to the server's parser
// (TestCohortBuilderQueriesParse in console/cohort_test.go).
import { emptyFact, emptyModel } from '../src/lib/cohort.js';

function model(patch) {
  return { ...emptyModel(), ...patch };
}

function fact(kind, patch) {
  return { ...emptyFact(kind), ...patch };
}

export const models = {
  everyone: model({}),
  'everyone by gender': model({ breakdown: ['gender'] }),
  'every dimension': model({ breakdown: ['gender', 'ageBand', 'birthDecade', 'zip3', 'race', 'ethnicity', 'deceased'] }),
  'women 18 to 65': model({ gender: 'female', age: { min: '18', max: '65' }, breakdown: ['ageBand'] }),
  'born 1950s, alive': model({ birthYear: { min: '1950', max: '1959' }, deceased: 'false' }),
  'zip race ethnicity': model({ zip3: '021', race: '2106-3', ethnicity: '2186-5', breakdown: ['race', 'gender'] }),
  diabetes: model({ facts: [fact('condition', { codes: 'sct:44054006' })], breakdown: ['gender'] }),
  'diabetes, two systems, active, dated': model({
    facts: [fact('condition', { codes: 'http://snomed.info/sct|44054006, icd10:E11.9', status: 'active', dateFrom: '2010-01-01', dateTo: '2019-12-31' })],
  }),
  'HbA1c over 6.5 %': model({ facts: [fact('observation', { codes: 'loinc:4548-4', valueMin: '6.5', valueMinOp: 'gt', unit: '%' })] }),
  'BMI 25 to 30': model({
    facts: [fact('observation', { codes: 'loinc:39156-5', valueMin: '25', valueMax: '30', valueMaxOp: 'lt', unit: 'kg/m2' })],
    breakdown: ['gender', 'ageBand'],
  }),
  'smoking status coded': model({ facts: [fact('observation', { codes: 'loinc:72166-2', valueCodes: 'sct:266919005' })] }),
  'any of three kinds': model({
    match: 'any',
    facts: [fact('medication', { codes: 'rxnorm:860975' }), fact('procedure', {}), fact('immunization', { codes: 'cvx:140' })],
  }),
  'without a medication': model({
    gender: 'male',
    facts: [fact('condition', { codes: 'sct:38341003' }), fact('medication', { codes: 'rxnorm:314076', exclude: true })],
  }),
  'HbA1c within a year of diabetes': model({
    facts: [
      fact('condition', { codes: 'sct:44054006', name: 'dx' }),
      fact('observation', { codes: 'loinc:4548-4', valueMin: '6.5', unit: '%', withinOf: 'dx', withinFrom: '0', withinTo: '365' }),
    ],
    breakdown: ['ageBand'],
  }),
  'encounter before a report, any': model({
    match: 'any',
    age: { min: '40' },
    facts: [
      fact('encounter', { name: 'visit' }),
      fact('report', { withinOf: 'visit', withinFrom: '-30' }),
      fact('condition', { exclude: true, codes: 'sct:44054006', withinOf: 'visit', withinTo: '0' }),
    ],
  }),
  'windows chained': model({
    facts: [
      fact('condition', { codes: 'sct:44054006', name: 'a' }),
      fact('medication', { name: 'b', withinOf: 'a', withinFrom: '0', withinTo: '90' }),
      fact('observation', { withinOf: 'b', withinFrom: '1' }),
    ],
  }),
};
